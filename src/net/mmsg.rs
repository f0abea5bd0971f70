//! Batched UDP receive and send.
//!
//! On Linux one `recvmmsg` fills up to `batch` preallocated slots and one
//! `sendmmsg` hands up to `batch` queued datagrams to the kernel, so a busy
//! UDP socket costs one system call per batch instead of one per datagram.
//! Elsewhere the same types fall back to one `recvmsg`/`sendto` per datagram;
//! that path is also available everywhere as [`RecvBatch::recv_each`] and
//! [`SendBatch::flush_each`], and single datagrams go through [`recv_one`]
//! and [`send_one`].
//!
//! Every call is non-blocking (`MSG_DONTWAIT`), whatever the socket's own
//! mode, and is retried when a signal interrupts it.
//!
//! The message headers handed to the kernel point into the batch's own
//! buffers. They are rebuilt immediately before every call rather than kept
//! from construction, so moving a batch can never leave them dangling.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// The most datagrams one batched call handles: Linux caps the vector length
/// of `recvmmsg`/`sendmmsg` at `UIO_MAXIOV` (1024), so larger batches would
/// only waste memory.
pub const MAX_BATCH: usize = 1024;

/// Default bound on the datagrams a [`SendBatch`] keeps queued.
pub const DEFAULT_MAX_QUEUED: usize = 16 * 1024;

/// Default bound on the payload bytes a [`SendBatch`] keeps queued.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

#[cfg(target_os = "linux")]
const RECV_FLAGS: libc::c_int = libc::MSG_DONTWAIT;
// MSG_NOSIGNAL keeps a send on a shut-down stream socket from raising SIGPIPE
// in a program that has not ignored it; it does not exist on every platform.
#[cfg(target_os = "linux")]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const RECV_FLAGS: libc::c_int = libc::MSG_DONTWAIT;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

/// One datagram held by a [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// The payload, cut to the batch's `max_len`.
    pub data: &'a [u8],
    /// The sender.
    pub peer: SocketAddr,
    /// Whether the datagram was longer than `max_len` and lost its tail.
    pub truncated: bool,
}

/// What [`recv_one`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes written to the buffer.
    pub len: usize,
    /// The sender, or `None` when it is not an IPv4 or IPv6 address.
    pub peer: Option<SocketAddr>,
    /// Whether the datagram was longer than the buffer and lost its tail.
    pub truncated: bool,
}

/// Per-slot results of the last receive, copied out of the kernel's headers.
#[derive(Clone, Copy, Default)]
struct SlotMeta {
    len: usize,
    addr_len: libc::socklen_t,
    truncated: bool,
}

/// Receives up to `batch` datagrams per system call into buffers allocated
/// once.
///
/// A slot is `max_len` bytes; longer datagrams are cut and flagged
/// [`Received::truncated`]. Datagrams from the last receive stay readable
/// through [`get`](Self::get) and [`iter`](Self::iter) until the next one.
pub struct RecvBatch {
    batch: usize,
    max_len: usize,
    /// `batch` slots of `max_len` bytes, back to back.
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    meta: Box<[SlotMeta]>,
    count: usize,
    syscalls: u64,
    /// An error met after some datagrams of a per-datagram receive had
    /// already arrived; reported by the next receive so it is not lost.
    pending: Option<io::Error>,
    #[cfg(target_os = "linux")]
    scratch: MmsgScratch,
}

impl RecvBatch {
    /// Slots for `batch` datagrams of up to `max_len` bytes each.
    ///
    /// `batch` is clamped to `1..=`[`MAX_BATCH`]. The `batch * max_len` bytes
    /// of buffer are allocated here and never again.
    ///
    /// # Panics
    /// If `batch * max_len` overflows `usize`.
    pub fn new(batch: usize, max_len: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        let total = batch
            .checked_mul(max_len)
            .expect("RecvBatch: batch * max_len overflows usize");
        RecvBatch {
            batch,
            max_len,
            bufs: vec![0u8; total].into_boxed_slice(),
            addrs: vec![zeroed_storage(); batch].into_boxed_slice(),
            meta: vec![SlotMeta::default(); batch].into_boxed_slice(),
            count: 0,
            syscalls: 0,
            pending: None,
            #[cfg(target_os = "linux")]
            scratch: MmsgScratch::new(batch),
        }
    }

    /// The number of slots.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The size of each slot.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// How many datagrams the last receive delivered.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last receive delivered nothing (or failed).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Receive system calls made so far, including retries after `EINTR`.
    pub fn syscalls(&self) -> u64 {
        self.syscalls
    }

    /// Receives what is queued on `fd`, up to `batch` datagrams, without
    /// blocking: one `recvmmsg` on Linux, [`recv_each`](Self::recv_each)
    /// elsewhere.
    ///
    /// Returns how many datagrams arrived; `Err` of kind
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) when none were queued. Other
    /// errors may be reports of earlier sends (such as `ECONNREFUSED` on a
    /// connected socket) rather than a broken socket. The previous
    /// datagrams are discarded either way.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            self.recv_mmsg(fd)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.recv_each(fd)
        }
    }

    /// Like [`recv`](Self::recv) but with one `recvmsg` per datagram, stopping
    /// at the first that finds the queue empty.
    ///
    /// An error met after some datagrams arrived is returned by the next
    /// call instead, so those datagrams are delivered and the error is not
    /// lost.
    pub fn recv_each(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let max_len = self.max_len;
        for i in 0..self.batch {
            let buf = &mut self.bufs[i * max_len..(i + 1) * max_len];
            match recvmsg_into(fd, buf, &mut self.addrs[i], &mut self.syscalls) {
                Ok(meta) => {
                    self.meta[i] = meta;
                    self.count += 1;
                }
                Err(e) if self.count == 0 => return Err(e),
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.pending = Some(e);
                    }
                    break;
                }
            }
        }
        Ok(self.count)
    }

    #[cfg(target_os = "linux")]
    fn recv_mmsg(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let n = self.batch;
        let max_len = self.max_len;
        // Every pointer below comes from one borrow of its whole array taken
        // after the last safe write to that array, so none is invalidated by
        // a later reborrow before the call.
        let buf_base = self.bufs.as_mut_ptr();
        for (i, iov) in self.scratch.iovecs.iter_mut().enumerate() {
            iov.iov_base = buf_base.wrapping_add(i * max_len).cast();
            iov.iov_len = max_len;
        }
        let iov_base = self.scratch.iovecs.as_mut_ptr();
        let addr_base = self.addrs.as_mut_ptr();
        for (i, hdr) in self.scratch.hdrs.iter_mut().enumerate() {
            hdr.msg_hdr.msg_name = addr_base.wrapping_add(i).cast();
            hdr.msg_hdr.msg_namelen = STORAGE_LEN;
            hdr.msg_hdr.msg_iov = iov_base.wrapping_add(i);
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let hdrs = self.scratch.hdrs.as_mut_ptr();
        let got = retry_eintr(&mut self.syscalls, || {
            // SAFETY: `hdrs` points to `n` initialised mmsghdrs. Header i
            // names slot i of `addrs` with its full size and one iovec
            // describing bytes [i*max_len, (i+1)*max_len) of `bufs`; all
            // four arrays are owned by `self`, which is exclusively borrowed
            // for this whole method, so they stay allocated and unaliased
            // while the kernel writes through the pointers, and the kernel
            // never writes past the lengths given. `n <= MAX_BATCH` fits a
            // c_uint. A null timeout is allowed and means none.
            unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs,
                    n as libc::c_uint,
                    RECV_FLAGS as _,
                    ptr::null_mut(),
                ) as isize
            }
        })?;
        let got = got.min(n);
        for (meta, hdr) in self.meta.iter_mut().zip(&self.scratch.hdrs[..got]) {
            *meta = SlotMeta {
                len: (hdr.msg_len as usize).min(max_len),
                addr_len: hdr.msg_hdr.msg_namelen,
                truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        self.count = got;
        Ok(got)
    }

    /// Datagram `i` of the last receive.
    ///
    /// `None` when `i` is out of range, or when the sender's address is not
    /// IPv4 or IPv6 (which a UDP socket never reports).
    pub fn get(&self, i: usize) -> Option<Received<'_>> {
        if i >= self.count {
            return None;
        }
        let meta = self.meta[i];
        let peer = sockaddr_to_std(&self.addrs[i], meta.addr_len)?;
        let start = i * self.max_len;
        Some(Received {
            data: &self.bufs[start..start + meta.len],
            peer,
            truncated: meta.truncated,
        })
    }

    /// The datagrams of the last receive, in arrival order, skipping any
    /// whose sender [`get`](Self::get) cannot name.
    pub fn iter(&self) -> impl Iterator<Item = Received<'_>> + '_ {
        (0..self.count).filter_map(move |i| self.get(i))
    }
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("batch", &self.batch)
            .field("max_len", &self.max_len)
            .field("len", &self.count)
            .field("syscalls", &self.syscalls)
            .finish_non_exhaustive()
    }
}

/// A queued outgoing datagram: its bytes in the arena and its destination.
#[derive(Clone, Copy)]
struct Entry {
    offset: usize,
    len: usize,
    to: SocketAddr,
}

/// What to do with the head of the queue after the kernel refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The send buffer is full: keep it and everything after it.
    Backpressure,
    /// The socket itself is unusable: keep the queue and report the error.
    Socket,
    /// Only this datagram is at fault: drop it and carry on.
    Datagram,
}

fn classify(e: &io::Error) -> Refusal {
    if e.kind() == io::ErrorKind::WouldBlock {
        return Refusal::Backpressure;
    }
    match e.raw_os_error() {
        Some(
            libc::EBADF
            | libc::ENOTSOCK
            | libc::EFAULT
            | libc::ENOMEM
            | libc::EPIPE
            | libc::ENOTCONN
            | libc::EISCONN
            | libc::EOPNOTSUPP,
        ) => Refusal::Socket,
        _ => Refusal::Datagram,
    }
}

/// Collects outgoing datagrams and sends them with as few system calls as
/// possible: one `sendmmsg` per `batch` datagrams on Linux.
///
/// [`push`](Self::push) copies each payload into one reused arena, so a
/// steady stream of datagrams allocates nothing once the arena has grown.
///
/// # What happens to datagrams the kernel refuses
/// - The send buffer is full (`EAGAIN`): [`flush`](Self::flush) stops, keeps
///   that datagram and the rest in order, and returns what it sent; call it
///   again when the socket is writable. The queue is bounded (see
///   [`with_limits`](Self::with_limits)): while it is full, `push` drops the
///   new datagram and counts it in [`overflowed`](Self::overflowed), as a
///   congested network would.
/// - The datagram itself is refused (`EMSGSIZE`, `EINVAL` for port 0,
///   `EAFNOSUPPORT` for the wrong family, `ENETUNREACH`, `EACCES`,
///   `ENOBUFS`, a pending `ECONNREFUSED`, …): it is dropped, counted in
///   [`refused`](Self::refused), its error kept for
///   [`take_error`](Self::take_error), and sending goes on with the next.
/// - The socket is unusable (`EBADF`, `ENOTSOCK`, `EFAULT`, `ENOMEM`,
///   `EPIPE`, `ENOTCONN`, `EISCONN`, `EOPNOTSUPP`): `flush` keeps the queue
///   and returns the error, or, if it had already sent something in this
///   call, returns that count and meets the error again on the next call.
pub struct SendBatch {
    batch: usize,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    max_queued: usize,
    max_bytes: usize,
    refused: u64,
    overflowed: u64,
    last_error: Option<io::Error>,
    syscalls: u64,
    #[cfg(target_os = "linux")]
    scratch: SendScratch,
}

impl SendBatch {
    /// An empty queue sending up to `batch` datagrams per system call,
    /// bounded by [`DEFAULT_MAX_QUEUED`] datagrams and
    /// [`DEFAULT_MAX_QUEUED_BYTES`] bytes. `batch` is clamped to
    /// `1..=`[`MAX_BATCH`].
    pub fn new(batch: usize) -> Self {
        Self::with_limits(batch, DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED_BYTES)
    }

    /// Like [`new`](Self::new), holding at most `max_queued` datagrams and
    /// `max_bytes` payload bytes at once.
    pub fn with_limits(batch: usize, max_queued: usize, max_bytes: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        SendBatch {
            batch,
            arena: Vec::new(),
            entries: Vec::with_capacity(batch),
            max_queued,
            max_bytes,
            refused: 0,
            overflowed: 0,
            last_error: None,
            syscalls: 0,
            #[cfg(target_os = "linux")]
            scratch: SendScratch::new(batch),
        }
    }

    /// The most datagrams sent per system call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Queues a copy of `data` for `to`.
    ///
    /// When the queue already holds its limit of datagrams or the bytes
    /// would exceed its byte limit, the datagram is dropped and counted in
    /// [`overflowed`](Self::overflowed) instead.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        if self.entries.len() >= self.max_queued
            || self.arena.len().saturating_add(data.len()) > self.max_bytes
        {
            self.overflowed += 1;
            return;
        }
        self.entries.push(Entry {
            offset: self.arena.len(),
            len: data.len(),
            to,
        });
        self.arena.extend_from_slice(data);
    }

    /// Datagrams waiting to be sent.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.arena.clear();
    }

    /// Datagrams dropped because the kernel refused them.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Datagrams dropped by [`push`](Self::push) because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// The error of the most recently refused datagram, if not taken yet.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.last_error.take()
    }

    /// Send system calls made so far, including retries after `EINTR`.
    pub fn syscalls(&self) -> u64 {
        self.syscalls
    }

    /// Sends everything queued on `fd` without blocking: `sendmmsg` calls of
    /// up to `batch` datagrams on Linux, [`flush_each`](Self::flush_each)
    /// elsewhere.
    ///
    /// Returns how many datagrams the kernel accepted in this call; what it
    /// could not take for lack of buffer space stays queued. See the type's
    /// documentation for refused datagrams and errors.
    pub fn flush(&mut self, fd: RawFd) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            self.flush_mmsg(fd)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.flush_each(fd)
        }
    }

    /// Like [`flush`](Self::flush) but with one `sendto` per datagram.
    pub fn flush_each(&mut self, fd: RawFd) -> io::Result<usize> {
        let (mut head, mut refused) = (0, 0);
        let result = loop {
            let Some(entry) = self.entries.get(head) else {
                break Ok(());
            };
            let data = &self.arena[entry.offset..entry.offset + entry.len];
            match sendto(fd, data, &entry.to, &mut self.syscalls) {
                Ok(_) => head += 1,
                Err(e) => match classify(&e) {
                    Refusal::Backpressure => break Ok(()),
                    Refusal::Socket => break Err(e),
                    Refusal::Datagram => {
                        head += 1;
                        refused += 1;
                        self.last_error = Some(e);
                    }
                },
            }
        };
        self.finish_flush(head, refused, result)
    }

    #[cfg(target_os = "linux")]
    fn flush_mmsg(&mut self, fd: RawFd) -> io::Result<usize> {
        let (mut head, mut refused) = (0, 0);
        let result = loop {
            let n = (self.entries.len() - head).min(self.batch);
            if n == 0 {
                break Ok(());
            }
            let chunk = &self.entries[head..head + n];
            let scratch = &mut self.scratch;
            for ((slot, len), entry) in scratch
                .addrs
                .iter_mut()
                .zip(&mut *scratch.addr_lens)
                .zip(chunk)
            {
                (*slot, *len) = raw_addr(&entry.to);
            }
            // The kernel only reads through these pointers, but iovec and
            // msghdr declare them mutable.
            let arena = self.arena.as_ptr().cast_mut();
            for (iov, entry) in scratch.iovecs.iter_mut().zip(chunk) {
                iov.iov_base = arena.wrapping_add(entry.offset).cast();
                iov.iov_len = entry.len;
            }
            let iov_base = scratch.iovecs.as_mut_ptr();
            let addr_base = scratch.addrs.as_mut_ptr();
            for (i, hdr) in scratch.hdrs[..n].iter_mut().enumerate() {
                hdr.msg_hdr.msg_name = addr_base.wrapping_add(i).cast();
                hdr.msg_hdr.msg_namelen = scratch.addr_lens[i];
                hdr.msg_hdr.msg_iov = iov_base.wrapping_add(i);
                hdr.msg_hdr.msg_iovlen = 1;
                hdr.msg_hdr.msg_control = ptr::null_mut();
                hdr.msg_hdr.msg_controllen = 0;
                hdr.msg_hdr.msg_flags = 0;
                hdr.msg_len = 0;
            }
            let hdrs = scratch.hdrs.as_mut_ptr();
            let sent = retry_eintr(&mut self.syscalls, || {
                // SAFETY: `hdrs` points to at least `n` initialised mmsghdrs.
                // Header i names slot i of `scratch.addrs` with the length of
                // the address written there, and one iovec covering entry
                // i's bytes, which lie inside `arena` by construction in
                // `push`. `self` is exclusively borrowed for the whole
                // method, so nothing frees, moves or writes those arrays
                // before the call returns; the kernel reads the payload and
                // addresses and writes only the headers' msg_len fields.
                // `n <= MAX_BATCH` fits a c_uint.
                unsafe { libc::sendmmsg(fd, hdrs, n as libc::c_uint, SEND_FLAGS as _) as isize }
            });
            match sent {
                // Never returned for a non-empty vector; stopping beats
                // spinning if it ever were.
                Ok(0) => break Ok(()),
                // Fewer than `n` means the next datagram failed; the next
                // call starts with it and reports its error.
                Ok(k) => head += k.min(n),
                Err(e) => match classify(&e) {
                    Refusal::Backpressure => break Ok(()),
                    Refusal::Socket => break Err(e),
                    Refusal::Datagram => {
                        head += 1;
                        refused += 1;
                        self.last_error = Some(e);
                    }
                },
            }
        };
        self.finish_flush(head, refused, result)
    }

    /// Drops the first `head` entries, of which `refused` were refused and
    /// the rest sent, and turns the loop's outcome into `flush`'s result.
    fn finish_flush(
        &mut self,
        head: usize,
        refused: usize,
        result: io::Result<()>,
    ) -> io::Result<usize> {
        self.refused += refused as u64;
        let sent = head - refused;
        if head == self.entries.len() {
            self.entries.clear();
            self.arena.clear();
        } else if head > 0 {
            // Compacting costs a copy of what is left, only when the kernel
            // pushed back; it keeps the arena from growing without bound
            // while a slow socket is never fully drained.
            let start = self.entries[head].offset;
            self.arena.drain(..start);
            self.entries.drain(..head);
            for e in &mut self.entries {
                e.offset -= start;
            }
        }
        match result {
            Ok(()) => Ok(sent),
            Err(_) if sent > 0 => Ok(sent),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("batch", &self.batch)
            .field("len", &self.entries.len())
            .field("queued_bytes", &self.arena.len())
            .field("max_queued", &self.max_queued)
            .field("max_bytes", &self.max_bytes)
            .field("refused", &self.refused)
            .field("overflowed", &self.overflowed)
            .field("syscalls", &self.syscalls)
            .finish_non_exhaustive()
    }
}

/// Receives one datagram from `fd` into `buf` without blocking, with one
/// `recvmsg`.
///
/// A datagram longer than `buf` is cut and flagged
/// [`truncated`](RecvMeta::truncated). `Err` of kind
/// [`WouldBlock`](io::ErrorKind::WouldBlock) when none is queued.
pub fn recv_one(fd: RawFd, buf: &mut [u8]) -> io::Result<RecvMeta> {
    let mut addr = zeroed_storage();
    let mut syscalls = 0;
    let meta = recvmsg_into(fd, buf, &mut addr, &mut syscalls)?;
    Ok(RecvMeta {
        len: meta.len,
        peer: sockaddr_to_std(&addr, meta.addr_len),
        truncated: meta.truncated,
    })
}

/// Sends one datagram of `data` to `to` from `fd` without blocking, with one
/// `sendto`. Returns the bytes sent.
pub fn send_one(fd: RawFd, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    let mut syscalls = 0;
    sendto(fd, data, &to, &mut syscalls)
}

/// Runs a system call wrapper until it is not interrupted by a signal,
/// counting every attempt.
fn retry_eintr(syscalls: &mut u64, mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        *syscalls += 1;
        let r = call();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn recvmsg_into(
    fd: RawFd,
    buf: &mut [u8],
    addr: &mut libc::sockaddr_storage,
    syscalls: &mut u64,
) -> io::Result<SlotMeta> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg = zeroed_msghdr();
    msg.msg_name = ptr::from_mut(addr).cast();
    msg.msg_namelen = STORAGE_LEN;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let len = retry_eintr(syscalls, || {
        // SAFETY: `msg` names `addr` with its full size and one iovec
        // covering exactly `buf`; `buf` and `addr` are exclusively borrowed
        // and `iov` and `msg` live on this frame for the whole call, and the
        // kernel writes no more than those lengths. No control buffer is
        // given (null pointer, zero length).
        unsafe { libc::recvmsg(fd, &mut msg, RECV_FLAGS) as isize }
    })?;
    Ok(SlotMeta {
        len: len.min(buf.len()),
        addr_len: msg.msg_namelen,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

fn sendto(fd: RawFd, data: &[u8], to: &SocketAddr, syscalls: &mut u64) -> io::Result<usize> {
    let (addr, addr_len) = raw_addr(to);
    retry_eintr(syscalls, || {
        // SAFETY: `data` is a live slice of `data.len()` bytes and `addr` a
        // local holding an initialised sockaddr of `addr_len` bytes (the
        // size of the variant written); the kernel only reads them during
        // the call.
        unsafe {
            libc::sendto(
                fd,
                data.as_ptr().cast(),
                data.len(),
                SEND_FLAGS,
                ptr::from_ref(&addr).cast(),
                addr_len,
            ) as isize
        }
    })
}

/// An IPv4 or IPv6 socket address in the C layout, built without unsafe
/// code; its size covers either.
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

const STORAGE_LEN: libc::socklen_t = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;

fn raw_addr(addr: &SocketAddr) -> (RawAddr, libc::socklen_t) {
    match addr {
        SocketAddr::V4(a) => {
            let v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                ..zeroed_sockaddr_in()
            };
            (RawAddr { v4 }, mem::size_of::<libc::sockaddr_in>() as _)
        }
        SocketAddr::V6(a) => {
            #[allow(
                clippy::needless_update,
                reason = "BSD-derived systems add a sin6_len field"
            )]
            let v6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
                ..zeroed_sockaddr_in6()
            };
            (RawAddr { v6 }, mem::size_of::<libc::sockaddr_in6>() as _)
        }
    }
}

/// The sender the kernel wrote into `ss`, when it is IPv4 or IPv6 and
/// `len` says it was written whole.
fn sockaddr_to_std(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: sockaddr_storage is by definition at least as large
            // and as aligned as every sockaddr type, every byte of it is
            // initialised (it starts zeroed and the kernel writes bytes),
            // and sockaddr_in is plain integers, valid for any bytes.
            let sin = unsafe { ptr::from_ref(ss).cast::<libc::sockaddr_in>().read() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { ptr::from_ref(ss).cast::<libc::sockaddr_in6>().read() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is integers and padding; all zeroes is a
    // valid (AF_UNSPEC) value.
    unsafe { mem::zeroed() }
}

fn zeroed_sockaddr_in() -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is integers and byte arrays; all zeroes is valid.
    unsafe { mem::zeroed() }
}

fn zeroed_sockaddr_in6() -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is integers and byte arrays; all zeroes is valid.
    unsafe { mem::zeroed() }
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is integers and raw pointers; all zeroes (null
    // pointers, zero lengths) is valid, and it also clears the private
    // padding fields some C libraries declare, which a literal could not.
    unsafe { mem::zeroed() }
}

/// The kernel-facing headers of a [`RecvBatch`]. Their pointers are
/// rewritten before every call, so they are never read while stale.
#[cfg(target_os = "linux")]
struct MmsgScratch {
    iovecs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

#[cfg(target_os = "linux")]
impl MmsgScratch {
    fn new(batch: usize) -> Self {
        MmsgScratch {
            iovecs: vec![null_iovec(); batch].into_boxed_slice(),
            hdrs: vec![zeroed_mmsghdr(); batch].into_boxed_slice(),
        }
    }
}

/// The kernel-facing headers and addresses of a [`SendBatch`].
#[cfg(target_os = "linux")]
struct SendScratch {
    addrs: Box<[RawAddr]>,
    addr_lens: Box<[libc::socklen_t]>,
    iovecs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

#[cfg(target_os = "linux")]
impl SendScratch {
    fn new(batch: usize) -> Self {
        let unspecified = raw_addr(&SocketAddr::from(([0, 0, 0, 0], 0))).0;
        SendScratch {
            addrs: vec![unspecified; batch].into_boxed_slice(),
            addr_lens: vec![0; batch].into_boxed_slice(),
            iovecs: vec![null_iovec(); batch].into_boxed_slice(),
            hdrs: vec![zeroed_mmsghdr(); batch].into_boxed_slice(),
        }
    }
}

// SAFETY: the raw pointers inside iovec and mmsghdr make these types neither
// Send nor Sync, but they own nothing and Rust code never reads through
// them: they are rewritten from `&mut self` immediately before each system
// call and only the kernel dereferences them, during that call. Moving the
// arrays to another thread, or sharing `&` references to them, therefore
// cannot race on or outlive what they point to.
#[cfg(target_os = "linux")]
unsafe impl Send for MmsgScratch {}
// SAFETY: as for Send above.
#[cfg(target_os = "linux")]
unsafe impl Sync for MmsgScratch {}
// SAFETY: as for MmsgScratch.
#[cfg(target_os = "linux")]
unsafe impl Send for SendScratch {}
// SAFETY: as for MmsgScratch.
#[cfg(target_os = "linux")]
unsafe impl Sync for SendScratch {}

#[cfg(target_os = "linux")]
fn null_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }
}

#[cfg(target_os = "linux")]
fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a msghdr (integers and raw pointers) and an
    // integer; all zeroes is valid, padding included.
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays `addr` into a sockaddr_storage the way the kernel would.
    fn as_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        let (raw, len) = raw_addr(addr);
        let mut ss = zeroed_storage();
        // SAFETY: the first `len` bytes of `raw` are the variant raw_addr
        // wrote, which has no padding and started zeroed, so they are
        // initialised; `ss` is larger than any variant and does not overlap
        // `raw`.
        unsafe {
            ptr::copy_nonoverlapping(
                ptr::from_ref(&raw).cast::<u8>(),
                ptr::from_mut(&mut ss).cast::<u8>(),
                len as usize,
            );
        }
        (ss, len)
    }

    #[test]
    fn addresses_round_trip() {
        for addr in [
            "127.0.0.1:9".parse().unwrap(),
            "1.2.3.4:65535".parse().unwrap(),
            "[::1]:1".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                4242,
                0x12345,
                7,
            )),
        ] {
            let (ss, len) = as_storage(&addr);
            assert_eq!(sockaddr_to_std(&ss, len), Some(addr));
        }
    }

    #[test]
    fn short_or_foreign_addresses_are_skipped() {
        let (mut ss, len) = as_storage(&"127.0.0.1:9".parse().unwrap());
        assert_eq!(sockaddr_to_std(&ss, len - 1), None);
        assert_eq!(sockaddr_to_std(&ss, 0), None);
        ss.ss_family = libc::AF_UNIX as libc::sa_family_t;
        assert_eq!(sockaddr_to_std(&ss, STORAGE_LEN), None);
    }

    #[test]
    fn refusals_are_classified() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&os(libc::EAGAIN)), Refusal::Backpressure);
        assert_eq!(classify(&os(libc::EWOULDBLOCK)), Refusal::Backpressure);
        for errno in [
            libc::EMSGSIZE,
            libc::ECONNREFUSED,
            libc::EINVAL,
            libc::ENOBUFS,
        ] {
            assert_eq!(classify(&os(errno)), Refusal::Datagram, "errno {errno}");
        }
        for errno in [libc::EBADF, libc::ENOTSOCK] {
            assert_eq!(classify(&os(errno)), Refusal::Socket, "errno {errno}");
        }
    }
}
