//! A slab whose entries can be borrowed one at a time beside all the others.
//!
//! The loop's connections live here. A callback holds its own connection
//! mutably and, through [`Split`], every other entry too, so it can write to
//! another connection of the loop without a queue, a lock or `unsafe`
//! (`split_at_mut` does the borrow splitting). Keys are reused last-freed first,
//! as the `slab` crate does.

/// One entry: a value, or a link in the free list.
#[derive(Debug)]
pub(crate) enum Entry<T> {
    Vacant(usize),
    Occupied(T),
}

/// A vector of entries with a free list.
#[derive(Debug)]
pub(crate) struct Slots<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list; `entries.len()` when empty.
    next: usize,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            next: 0,
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key the next `insert` will use.
    pub(crate) fn vacant_key(&self) -> usize {
        self.next
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next;
        if key == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next = key + 1;
        } else {
            match std::mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next = next,
                Entry::Occupied(_) => unreachable!("free list points at an occupied entry"),
            }
        }
        self.len += 1;
        key
    }

    pub(crate) fn contains(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.entries.get(key) {
            Some(Entry::Occupied(v)) => Some(v),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(v)) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn try_remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if let Entry::Vacant(_) = entry {
            return None;
        }
        match std::mem::replace(entry, Entry::Vacant(self.next)) {
            Entry::Occupied(v) => {
                self.next = key;
                self.len -= 1;
                Some(v)
            }
            Entry::Vacant(_) => None,
        }
    }

    /// Keys of the occupied entries, in key order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, e)| matches!(e, Entry::Occupied(_)).then_some(k))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, e)| match e {
                Entry::Occupied(v) => Some((k, v)),
                Entry::Vacant(_) => None,
            })
    }

    /// Entry `key` mutably, and every other entry beside it.
    #[inline]
    pub(crate) fn split(&mut self, key: usize) -> Option<(&mut T, Split<'_, T>)> {
        if key >= self.entries.len() {
            return None;
        }
        let (left, rest) = self.entries.split_at_mut(key);
        let (own, right) = rest.split_first_mut()?;
        match own {
            Entry::Occupied(v) => Some((v, Split { left, right, key })),
            Entry::Vacant(_) => None,
        }
    }

    /// All entries, as a [`Split`] around no entry.
    pub(crate) fn all(&mut self) -> Split<'_, T> {
        Split {
            left: &mut self.entries,
            right: &mut [],
            key: usize::MAX,
        }
    }
}

/// Every entry of a [`Slots`] but one (borrowed elsewhere).
#[derive(Debug)]
pub(crate) struct Split<'a, T> {
    left: &'a mut [Entry<T>],
    right: &'a mut [Entry<T>],
    key: usize,
}

impl<T> Split<'_, T> {
    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        let entry = if key < self.key {
            self.left.get_mut(key)
        } else if key > self.key {
            self.right.get_mut(key - self.key - 1)
        } else {
            None
        };
        match entry {
            Some(Entry::Occupied(v)) => Some(v),
            _ => None,
        }
    }

    /// Every occupied entry but the hole, in key order.
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(usize, &mut T)) {
        let base = self.key.wrapping_add(1);
        for (k, e) in self.left.iter_mut().enumerate() {
            if let Entry::Occupied(v) = e {
                f(k, v);
            }
        }
        for (k, e) in self.right.iter_mut().enumerate() {
            if let Entry::Occupied(v) = e {
                f(base + k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_reused_last_freed_first() {
        let mut s = Slots::default();
        let a = s.insert('a');
        let b = s.insert('b');
        let c = s.insert('c');
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(s.try_remove(b), Some('b'));
        assert_eq!(s.try_remove(b), None);
        assert_eq!(s.vacant_key(), 1);
        assert_eq!(s.insert('d'), 1);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn split_reaches_every_other_entry() {
        let mut s = Slots::default();
        for i in 0..5 {
            s.insert(i * 10);
        }
        s.try_remove(3);
        let (own, mut rest) = s.split(2).expect("occupied");
        *own += 1;
        assert_eq!(rest.get_mut(2), None, "the hole is not reachable");
        assert_eq!(rest.get_mut(3), None, "vacant");
        *rest.get_mut(4).expect("occupied") += 1;
        let mut seen = Vec::new();
        rest.for_each(|k, v| seen.push((k, *v)));
        assert_eq!(seen, vec![(0, 0), (1, 10), (4, 41)]);
        assert_eq!(s.get(2), Some(&21));
        assert!(s.split(3).is_none());
        assert!(s.split(9).is_none());
    }

    proptest! {
        /// Against a model: a map from key to value, keys handed out like a slab.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..3, 0usize..16), 0..200)) {
            let mut s = Slots::default();
            let mut model = std::collections::BTreeMap::new();
            for (i, (op, k)) in ops.into_iter().enumerate() {
                match op {
                    0 => {
                        let key = s.insert(i);
                        prop_assert!(!model.contains_key(&key));
                        model.insert(key, i);
                    }
                    1 => prop_assert_eq!(s.try_remove(k), model.remove(&k)),
                    _ => {
                        if let Some((own, mut rest)) = s.split(k) {
                            prop_assert_eq!(Some(&*own), model.get(&k));
                            let mut seen = Vec::new();
                            rest.for_each(|key, v| seen.push((key, *v)));
                            let want: Vec<_> = model.iter().filter(|(key, _)| **key != k).map(|(a, b)| (*a, *b)).collect();
                            prop_assert_eq!(seen, want);
                        } else {
                            prop_assert!(!model.contains_key(&k));
                        }
                    }
                }
                prop_assert_eq!(s.len(), model.len());
                let keys: Vec<_> = s.keys().collect();
                let want: Vec<_> = model.keys().copied().collect();
                prop_assert_eq!(keys, want);
            }
        }
    }
}
