//! Engine options: loops, accepting, buffers, limits and socket settings.

use std::time::Duration;

use crate::lb::LoadBalancer;
use crate::net::SocketOptions;

/// Tunables of an engine. Every field has a documented default.
///
/// Usually set through [`EngineBuilder`](crate::EngineBuilder) methods; the
/// struct is public so a whole configuration can be built, stored and passed at
/// once with [`EngineBuilder::options`](crate::EngineBuilder::options).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Event loops, one OS thread each. Default: available cores.
    pub loops: usize,
    /// One `SO_REUSEPORT` listener per loop, balanced by the kernel (default on
    /// Linux). When off, loop 0 accepts and hands sockets out by `load_balancer`.
    pub reuse_port: bool,
    /// How a shared listener picks a loop. Default: round robin.
    pub load_balancer: LoadBalancer,
    /// `listen(2)` backlog. Default: 1024.
    pub backlog: i32,
    /// The loop's shared read buffer, bytes. Default: 64 KiB (gnet, Netty's
    /// adaptive maximum).
    pub read_buffer_size: usize,
    /// Bytes read from one connection per wakeup before the loop serves the others
    /// (fairness under edge triggering). Default: 1 MiB.
    pub read_budget: usize,
    /// Capacity of the pooled per-connection buffers. Default: 4 KiB.
    pub pool_buffer_size: usize,
    /// Buffers kept idle in each loop's pool. Default: 1024.
    pub pool_max_idle: usize,
    /// Above this many pending outbound bytes the connection stops being read and
    /// [`Conn::is_writable`](crate::Conn::is_writable) turns false. Default: 64 KiB.
    pub write_high_watermark: usize,
    /// Reading resumes and `on_writable` runs once pending output falls to this.
    /// Default: 32 KiB.
    pub write_low_watermark: usize,
    /// Pending outbound bytes beyond which the connection is closed with
    /// [`CloseReason::WriteOverflow`](crate::CloseReason::WriteOverflow) (logged
    /// at warn, at most once per 10 s per loop). Default: 8 MiB + 64 KiB, as
    /// `max_inbound`, so echoing a frame of the decoder's default maximum fits.
    pub max_outbound: usize,
    /// Unconsumed inbound bytes beyond which the connection is closed with
    /// [`CloseReason::InboundOverflow`](crate::CloseReason::InboundOverflow).
    /// Default: 8 MiB + 64 KiB (a maximal default frame plus one read).
    pub max_inbound: usize,
    /// Open connections allowed per engine; sockets accepted above it are closed
    /// at once (counted in `Counts::rejected`), leaving established connections
    /// untouched. Default: unlimited.
    pub max_connections: usize,
    /// Bytes queued by [`Engine::send`](crate::Engine::send) for one loop and not
    /// yet applied; beyond it `send` fails with
    /// [`SendError::InboxFull`](crate::SendError::InboxFull) instead of letting a
    /// producer outrun a stalled loop without bound. Default: 64 MiB.
    pub max_inbox_bytes: usize,
    /// Buffer bytes (unconsumed input plus pending output) all connections of
    /// the engine may hold together, split evenly between the loops. A loop
    /// past its share closes its largest holders with
    /// [`CloseReason::MemoryBudget`](crate::CloseReason::MemoryBudget) until it
    /// is an eighth under, as an overload manager sheds load, and logs that at
    /// warn (at most once per 10 s per loop). Default: `None` (no budget beyond
    /// the per-connection caps).
    pub memory_budget: Option<usize>,
    /// Connections accepted per listener per wakeup, so a connection storm does
    /// not starve established connections. Default: 64.
    pub accepts_per_wakeup: usize,
    /// First pause of accepting after `EMFILE`/`ENFILE`; doubles per failure up to
    /// `accept_backoff_max`. Default: 100 ms.
    pub accept_backoff_min: Duration,
    /// Longest pause of accepting after descriptor exhaustion. Default: 1 s.
    pub accept_backoff_max: Duration,
    /// How long [`Engine::stop`](crate::Engine::stop) waits for pending output to
    /// drain before closing what is left. Default: 5 s.
    pub shutdown_timeout: Duration,
    /// Socket options for listeners and connections (`TCP_NODELAY` on by
    /// default).
    pub socket: SocketOptions,
    /// Datagrams read from one UDP socket per wakeup before the loop serves the
    /// others. Default: 64.
    pub udp_budget: usize,
    /// Datagrams received with one `recvmmsg` and replies sent with one
    /// `sendmmsg` (Linux). 1 (the default) uses one `recvfrom`/`sendto` per
    /// datagram.
    pub udp_batch: usize,
    /// Receive buffer per datagram when batching; longer datagrams arrive
    /// truncated, flagged by `Datagram::truncated`. Memory per loop is
    /// `udp_batch × udp_max_datagram`. Default: 2048.
    pub udp_max_datagram: usize,
    /// Deliver datagrams whose source is one of the engine's own UDP addresses
    /// or port 0. Off by default: such a datagram is forged or a reflection
    /// (answering it answers ourselves, for ever), so it is dropped unread and
    /// counted in `Counts::datagrams_reflected`.
    pub udp_allow_own_source: bool,
    /// Close (or report through `on_idle`) a connection that received nothing for
    /// this long. Default: off.
    pub read_idle_timeout: Option<Duration>,
    /// Report a connection that sent nothing for this long. Default: off.
    pub write_idle_timeout: Option<Duration>,
    /// Report a connection that neither received nor sent for this long. Default:
    /// off.
    pub idle_timeout: Option<Duration>,
    /// Call `on_heartbeat` after this long without sending, so the handler pings
    /// only links that are otherwise quiet. Default: off.
    pub heartbeat: Option<Duration>,
    /// Close with [`CloseReason::FrameTimeout`](crate::CloseReason::FrameTimeout) a
    /// connection that holds unconsumed input (a partial frame or request) for
    /// longer than this, however slowly bytes keep trickling in. Default: off.
    pub frame_timeout: Option<Duration>,
    /// Payload bytes of datagrams queued through [`Udp`](crate::udp_session::Udp)
    /// per loop iteration; sends beyond it are dropped and counted. Default: 4 MiB.
    pub max_udp_queued: usize,
    /// Low-latency mode: after handling events, poll again without blocking
    /// for up to this long before sleeping in `epoll_wait`, and set
    /// `SO_BUSY_POLL` to it on UDP listeners where the kernel allows. Burns
    /// up to a core per loop while traffic keeps arriving. Default: off.
    pub busy_poll: Option<Duration>,
    /// `(listener index, settings)` of the UDP listeners that keep sessions.
    pub(crate) udp_sessions: Vec<(usize, crate::udp_session::SessionOptions)>,
    /// PROXY protocol and TLS settings of the listeners.
    pub(crate) layers: crate::layer::LayerSetup,
    /// Pending output above which a topic message to a subscriber is not queued
    /// (uWebSockets' `maxBackpressure`); what happens then is `slow_subscriber`.
    /// Other subscribers are never slowed. Default: 1 MiB.
    pub max_backpressure: usize,
    /// What a publish does to a subscriber above `max_backpressure`. Default:
    /// [`SlowSubscriber::Drop`].
    pub slow_subscriber: SlowSubscriber,
    /// Longest topic name, bytes; longer ones are refused with
    /// [`TopicError::BadName`](crate::TopicError::BadName). Default: 256.
    pub max_topic_len: usize,
    /// Topics one connection may be subscribed to. Default: 1024.
    pub max_topics_per_conn: usize,
    /// Distinct topics with members on one loop. Default: 1,000,000.
    pub max_topics_per_loop: usize,
}

/// What happens to a topic message for a subscriber whose pending output is
/// above [`Options::max_backpressure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowSubscriber {
    /// The message is not queued for that subscriber. Drops are counted in
    /// `Counts::topic_drops` and per connection in
    /// [`Conn::dropped`](crate::Conn::dropped) (and `ConnRef::dropped`), so the
    /// handler can tell the client it missed messages or resynchronise it.
    #[default]
    Drop,
    /// The subscriber is closed with
    /// [`CloseReason::SlowSubscriber`](crate::CloseReason::SlowSubscriber)
    /// (after the pass, so a publish never runs `on_close` inside a callback).
    Close,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reuse_port: cfg!(target_os = "linux"),
            load_balancer: LoadBalancer::RoundRobin,
            backlog: 1024,
            read_buffer_size: 64 * 1024,
            read_budget: 1024 * 1024,
            pool_buffer_size: 4 * 1024,
            pool_max_idle: 1024,
            write_high_watermark: 64 * 1024,
            write_low_watermark: 32 * 1024,
            max_outbound: crate::codec::DEFAULT_MAX_FRAME_LEN + 64 * 1024,
            max_inbound: crate::codec::DEFAULT_MAX_FRAME_LEN + 64 * 1024,
            memory_budget: None,
            accepts_per_wakeup: 64,
            max_connections: usize::MAX,
            max_inbox_bytes: 64 * 1024 * 1024,
            accept_backoff_min: Duration::from_millis(100),
            accept_backoff_max: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(5),
            socket: SocketOptions::default(),
            udp_budget: 64,
            udp_batch: 1,
            udp_max_datagram: 2048,
            udp_allow_own_source: false,
            read_idle_timeout: None,
            write_idle_timeout: None,
            idle_timeout: None,
            heartbeat: None,
            frame_timeout: None,
            max_udp_queued: 4 * 1024 * 1024,
            busy_poll: None,
            udp_sessions: Vec::new(),
            layers: Default::default(),
            max_backpressure: 1024 * 1024,
            slow_subscriber: SlowSubscriber::Drop,
            max_topic_len: 256,
            max_topics_per_conn: 1024,
            max_topics_per_loop: 1_000_000,
        }
    }
}

impl Options {
    /// Low-latency mode (sets [`Options::busy_poll`](#structfield.busy_poll)):
    /// after handling events a loop polls without blocking until `spin` has
    /// passed since the last event, then sleeps. While traffic keeps coming
    /// sooner than `spin` the loop uses a whole core.
    ///
    /// ```
    /// let opts = tether::Options::default().busy_poll(std::time::Duration::from_micros(200));
    /// assert_eq!(opts.busy_poll, Some(std::time::Duration::from_micros(200)));
    /// ```
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.busy_poll = (!spin.is_zero()).then_some(spin);
        self
    }

    pub(crate) fn topic_limits(&self) -> crate::topics::TopicLimits {
        crate::topics::TopicLimits {
            max_name_len: self.max_topic_len,
            per_conn: self.max_topics_per_conn,
            per_loop: self.max_topics_per_loop,
        }
    }

    pub(crate) fn timeouts(&self) -> crate::timeouts::TimeoutCfg {
        use crate::timeouts::ms;
        crate::timeouts::TimeoutCfg {
            read_idle: ms(self.read_idle_timeout),
            write_idle: ms(self.write_idle_timeout),
            all_idle: ms(self.idle_timeout),
            heartbeat: ms(self.heartbeat),
            frame: ms(self.frame_timeout),
        }
    }
}
