//! Binding the listening sockets and dealing them out to the loops.

use std::io;

use crate::event_loop::{ListenSocket, LoopListener};
use crate::net::{ListenAddr, listener};
use crate::options::Options;

/// Binds every address: with SO_REUSEPORT each loop gets its own TCP and UDP
/// socket (the first bind fixes port 0 for the rest); otherwise, and for Unix
/// sockets, loop 0 holds the one listener and hands connections out.
pub(super) fn bind_all(
    addrs: &[ListenAddr],
    opts: &Options,
) -> io::Result<(Vec<Vec<LoopListener>>, Vec<ListenAddr>)> {
    let mut per_loop: Vec<Vec<LoopListener>> = (0..opts.loops).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    let spread = opts.reuse_port && opts.loops > 1;
    for (tag, addr) in addrs.iter().enumerate() {
        let entry = |socket, shared, unix_path| LoopListener {
            socket,
            tag,
            shared,
            unix_path,
        };
        match addr {
            ListenAddr::Tcp(sa) => {
                let first = listener::bind_tcp(*sa, opts.reuse_port, opts.backlog, &opts.socket)?;
                let at = first.local_addr()?;
                bound.push(ListenAddr::Tcp(at));
                per_loop[0].push(entry(
                    ListenSocket::Tcp(first),
                    !spread && opts.loops > 1,
                    None,
                ));
                if spread {
                    for l in per_loop.iter_mut().skip(1) {
                        let s = listener::bind_tcp(at, true, opts.backlog, &opts.socket)?;
                        l.push(entry(ListenSocket::Tcp(s), false, None));
                    }
                }
            }
            ListenAddr::Udp(sa) => {
                let first = listener::bind_udp(*sa, spread, &opts.socket)?;
                let at = first.local_addr()?;
                bound.push(ListenAddr::Udp(at));
                per_loop[0].push(entry(ListenSocket::Udp(first), false, None));
                if spread {
                    for l in per_loop.iter_mut().skip(1) {
                        let s = listener::bind_udp(at, true, &opts.socket)?;
                        l.push(entry(ListenSocket::Udp(s), false, None));
                    }
                }
            }
            ListenAddr::Unix(path) => {
                let (l, file) = listener::bind_unix(path, opts.backlog, &opts.socket)?;
                bound.push(addr.clone());
                per_loop[0].push(entry(ListenSocket::Unix(l), opts.loops > 1, Some(file)));
            }
        }
    }
    Ok((per_loop, bound))
}
