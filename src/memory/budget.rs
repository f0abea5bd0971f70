//! The memory budget's accountant (sans-IO): whether a loop holds more buffer
//! memory than its share of `Options::memory_budget`, and which connections to
//! shed, largest first, to get back under it.
//!
//! The engine's budget is split evenly between its loops, so each loop decides
//! alone, without locks, and the loops together never exceed the whole. What
//! counts is buffer capacity owned by connections: unconsumed input and
//! pending output, the bytes a peer can make a server hold.

/// One loop's share of the engine's memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    share: usize,
}

impl Budget {
    /// The share of each of `loops` loops in `total` bytes, if a budget is set.
    pub(crate) fn per_loop(total: Option<usize>, loops: usize) -> Option<Budget> {
        total.map(|t| Budget {
            share: t / loops.max(1),
        })
    }

    /// Whether `held` bytes are past the share.
    pub(crate) fn exceeded(&self, held: usize) -> bool {
        held > self.share
    }

    /// Where shedding stops: an eighth under the share, so that one more read
    /// does not shed again at once.
    pub(crate) fn target(&self) -> usize {
        self.share - self.share / 8
    }
}

/// The connections to close, largest holder first, until what is left is
/// within `target`; `holders` are (connection, bytes held) pairs and `held`
/// their total.
pub(crate) fn victims(
    held: usize,
    target: usize,
    holders: impl Iterator<Item = (usize, usize)>,
) -> Vec<usize> {
    if held <= target {
        return Vec::new();
    }
    let mut by_size: Vec<(usize, usize)> = holders.filter(|&(_, n)| n > 0).collect();
    by_size.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut left = held;
    let mut out = Vec::new();
    for (key, n) in by_size {
        if left <= target {
            break;
        }
        left = left.saturating_sub(n);
        out.push(key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_the_budget_and_leave_headroom() {
        assert_eq!(Budget::per_loop(None, 4), None);
        let b = Budget::per_loop(Some(800), 2).unwrap();
        assert!(!b.exceeded(400));
        assert!(b.exceeded(401));
        assert_eq!(b.target(), 350);
        assert_eq!(Budget::per_loop(Some(10), 0).unwrap(), Budget { share: 10 });
    }

    #[test]
    fn the_largest_holders_go_first_and_only_as_many_as_needed() {
        let holders = [(1, 10), (2, 300), (3, 0), (4, 200), (5, 50)];
        assert_eq!(victims(560, 600, holders.into_iter()), Vec::<usize>::new());
        assert_eq!(victims(560, 300, holders.into_iter()), vec![2]);
        assert_eq!(victims(560, 100, holders.into_iter()), vec![2, 4]);
        assert_eq!(victims(560, 0, holders.into_iter()), vec![2, 4, 5, 1]);
    }
}
