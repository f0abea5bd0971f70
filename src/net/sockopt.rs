//! Socket options applied to listeners and connections.

use std::io;
use std::time::Duration;

use socket2::{SockRef, Socket, TcpKeepalive};

/// TCP keepalive probing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes (`None`: the system default).
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dropped (`None`: the system
    /// default).
    pub retries: Option<u32>,
}

/// Socket options, applied to every listener and every accepted or dialed
/// connection of an engine. Unset (`None`) options keep the system default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketOptions {
    /// `TCP_NODELAY`: send small writes at once. Default: on (a reactor already
    /// batches a callback's writes into one `write`).
    pub nodelay: bool,
    /// TCP keepalive probes. Default: off.
    pub keepalive: Option<Keepalive>,
    /// `SO_SNDBUF`, bytes.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF`, bytes.
    pub recv_buffer_size: Option<usize>,
    /// `SO_LINGER`; `Some(Duration::ZERO)` makes every close send RST.
    pub linger: Option<Duration>,
    /// `SO_REUSEADDR` on listeners. Default: on, so a restarted server binds
    /// while old connections sit in TIME_WAIT.
    pub reuse_address: bool,
    /// `SO_BINDTODEVICE` (Linux): bind listeners and dialed sockets to one
    /// interface.
    pub bind_device: Option<String>,
    /// `IPV6_V6ONLY` on IPv6 listeners.
    pub ipv6_only: Option<bool>,
    /// File permissions of Unix socket files (e.g. `0o660`).
    pub unix_mode: Option<u32>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            keepalive: None,
            send_buffer_size: None,
            recv_buffer_size: None,
            linger: None,
            reuse_address: true,
            bind_device: None,
            ipv6_only: None,
            unix_mode: None,
        }
    }
}

impl SocketOptions {
    /// Options set on a socket before it binds (listeners and UDP sockets).
    pub(crate) fn apply_before_bind(&self, socket: &Socket, ipv6: bool) -> io::Result<()> {
        socket.set_reuse_address(self.reuse_address)?;
        if let (true, Some(only)) = (ipv6, self.ipv6_only) {
            socket.set_only_v6(only)?;
        }
        self.apply_buffers(&SockRef::from(socket))?;
        self.apply_device(socket)
    }

    /// Options set on each accepted or dialed TCP connection.
    pub(crate) fn apply_to_conn(&self, sock: &SockRef<'_>, tcp: bool) -> io::Result<()> {
        if tcp {
            if self.nodelay {
                sock.set_tcp_nodelay(true)?;
            }
            if let Some(k) = self.keepalive {
                let mut ka = TcpKeepalive::new().with_time(k.idle);
                if let Some(i) = k.interval {
                    ka = ka.with_interval(i);
                }
                #[cfg(not(any(target_os = "windows", target_os = "openbsd")))]
                if let Some(r) = k.retries {
                    ka = ka.with_retries(r);
                }
                sock.set_tcp_keepalive(&ka)?;
            }
        }
        if self.linger.is_some() {
            sock.set_linger(self.linger)?;
        }
        // Accepted sockets inherit buffer sizes from the listener; dialed ones
        // need them set here.
        self.apply_buffers(sock)
    }

    fn apply_buffers(&self, sock: &SockRef<'_>) -> io::Result<()> {
        if let Some(n) = self.send_buffer_size {
            sock.set_send_buffer_size(n)?;
        }
        if let Some(n) = self.recv_buffer_size {
            sock.set_recv_buffer_size(n)?;
        }
        Ok(())
    }

    pub(crate) fn apply_device(&self, socket: &Socket) -> io::Result<()> {
        match &self.bind_device {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Some(dev) => socket.bind_device(Some(dev.as_bytes())),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Some(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "bind_device is Linux only",
            )),
            None => Ok(()),
        }
    }
}
