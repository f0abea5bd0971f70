//! The driver against rustls's own (buffered) peer, in memory.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Cert {
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A fixed self-signed certificate and key from tests/data/tls: `localhost`,
/// `other` (also for localhost, another key), `a.test`, `b.test`.
fn cert(name: &str) -> Cert {
    let fixture = |ext: &str| {
        let path = format!("{}/tests/data/tls/{name}.{ext}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    Cert {
        der: CertificateDer::from(fixture("cert.der")),
        key: PrivatePkcs8KeyDer::from(fixture("key.der")).into(),
    }
}

fn server_config(c: &Cert, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.der.clone()], c.key.clone_key())
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn client_config(trust: &Cert, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der.clone()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// The sans-IO side's state as the loop keeps it: a partial record held back.
struct Ours {
    session: TlsSession,
    held: Vec<u8>,
    plain: Vec<u8>,
}

impl Ours {
    fn new(session: TlsSession) -> Ours {
        Ours {
            session,
            held: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// Feeds `wire` in chunks of `chunk`; returns what to send back.
    fn feed(&mut self, wire: &[u8], chunk: usize) -> Result<Vec<u8>, TlsError> {
        let mut out = Vec::new();
        for piece in wire.chunks(chunk.max(1)) {
            self.held.extend_from_slice(piece);
            let used = self
                .session
                .receive(&mut self.held, &mut self.plain, &mut out)?;
            self.held.drain(..used);
        }
        Ok(out)
    }
}

/// rustls's buffered peer: bytes it wants to send.
fn drain(peer: &mut rustls::Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while peer.wants_write() {
        peer.write_tls(&mut out).unwrap();
    }
    out
}

/// Gives `bytes` to rustls's peer; returns the plaintext it decrypted.
fn give(peer: &mut rustls::Connection, mut bytes: &[u8]) -> Result<Vec<u8>, rustls::Error> {
    let mut plain = Vec::new();
    while !bytes.is_empty() {
        peer.read_tls(&mut bytes).unwrap();
        peer.process_new_packets()?;
        plain.extend(read_all(peer));
    }
    Ok(plain)
}

fn read_all(peer: &mut rustls::Connection) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match peer.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    got
}

/// Runs the handshake to completion, `chunk` bytes at a time into our side.
fn handshake(ours: &mut Ours, peer: &mut rustls::Connection, chunk: usize) {
    let mut out = Vec::new();
    ours.session.start(&mut out).unwrap();
    for _ in 0..20 {
        give(peer, &out).unwrap();
        let theirs = drain(peer);
        out = ours.feed(&theirs, chunk).unwrap();
        if ours.session.is_established() && !peer.is_handshaking() && out.is_empty() {
            return;
        }
    }
    panic!("handshake did not complete");
}

fn server_pair(chunk: usize) -> (Ours, rustls::Connection) {
    let c = cert("localhost");
    let ours = Ours::new(TlsSession::server(server_config(&c, &[b"h2", b"http/1.1"])).unwrap());
    let name = ServerName::try_from("localhost").unwrap();
    let client = ClientConnection::new(client_config(&c, &[b"http/1.1"]), name).unwrap();
    let mut pair = (ours, rustls::Connection::from(client));
    handshake(&mut pair.0, &mut pair.1, chunk);
    (pair.0, pair.1)
}

#[test]
fn server_handshake_and_data_both_ways_whole_and_bytewise() {
    for chunk in [1, 7, 100_000] {
        let (mut ours, mut peer) = server_pair(chunk);
        assert_eq!(ours.session.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Client to server: several records, fed in pieces.
        let message: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        peer.writer().write_all(&message).unwrap();
        let wire = drain(&mut peer);
        ours.feed(&wire, chunk).unwrap();
        assert_eq!(ours.plain, message);
        assert!(ours.held.is_empty(), "whole records leave nothing held");
        // Server to client.
        let mut out = Vec::new();
        ours.session.send(b"pong", &mut out).unwrap();
        ours.session.send(&message, &mut out).unwrap();
        assert_eq!(
            give(&mut peer, &out).unwrap(),
            [&b"pong"[..], &message].concat()
        );
    }
}

#[test]
fn close_notify_both_ways() {
    let (mut ours, mut peer) = server_pair(1000);
    let mut out = Vec::new();
    ours.session.close_notify(&mut out);
    ours.session.close_notify(&mut out);
    give(&mut peer, &out).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(peer.reader().read(&mut buf).unwrap(), 0, "clean EOF");
    // Writes after close_notify are dropped.
    let mut after = Vec::new();
    ours.session.send(b"late", &mut after).unwrap();
    assert!(after.is_empty());

    let (mut ours, mut peer) = server_pair(1000);
    peer.send_close_notify();
    let wire = drain(&mut peer);
    ours.feed(&wire, 1000).unwrap();
    assert!(ours.session.peer_closed());
}

#[test]
fn sni_picks_the_certificate() {
    let (a, b) = (cert("a.test"), cert("b.test"));
    let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
    for c in [&a, &b] {
        let key = rustls::crypto::ring::sign::any_supported_type(&c.key).unwrap();
        let name = if std::ptr::eq(c, &a) {
            "a.test"
        } else {
            "b.test"
        };
        resolver
            .add(
                name,
                rustls::sign::CertifiedKey::new(vec![c.der.clone()], key),
            )
            .unwrap();
    }
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let cfg = Arc::new(cfg);
    for (name, trust) in [("a.test", &a), ("b.test", &b)] {
        let mut ours = Ours::new(TlsSession::server(cfg.clone()).unwrap());
        let sn = ServerName::try_from(name).unwrap();
        let client = ClientConnection::new(client_config(trust, &[]), sn).unwrap();
        let mut peer = rustls::Connection::from(client);
        handshake(&mut ours, &mut peer, 500);
    }
    // A name with no certificate: the handshake fails, typed.
    let mut ours = Ours::new(TlsSession::server(cfg).unwrap());
    let sn = ServerName::try_from("c.test").unwrap();
    let client = ClientConnection::new(client_config(&a, &[]), sn).unwrap();
    let mut peer = rustls::Connection::from(client);
    let hello = drain(&mut peer);
    assert!(matches!(
        ours.feed(&hello, 500),
        Err(TlsError::Handshake(_))
    ));
}

#[test]
fn untrusted_certificate_and_garbage_are_handshake_errors_with_an_alert() {
    let (c, other) = (cert("localhost"), cert("other"));
    let mut ours = Ours::new(TlsSession::server(server_config(&c, &[])).unwrap());
    let name = ServerName::try_from("localhost").unwrap();
    let client = ClientConnection::new(client_config(&other, &[]), name).unwrap();
    let mut peer = rustls::Connection::from(client);
    let hello = drain(&mut peer);
    let flight = ours.feed(&hello, 1000).unwrap();
    // The client refuses the certificate and says so.
    assert!(give(&mut peer, &flight).is_err());
    let alert = drain(&mut peer);
    match ours.feed(&alert, 1000) {
        Err(TlsError::Handshake(rustls::Error::AlertReceived(_))) => {}
        other => panic!("expected an alert, got {other:?}"),
    }

    let mut ours = Ours::new(TlsSession::server(server_config(&c, &[])).unwrap());
    let mut out = Vec::new();
    let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let err = ours
        .session
        .receive(&mut junk, &mut ours.plain, &mut out)
        .unwrap_err();
    assert!(matches!(err, TlsError::Handshake(_)), "{err:?}");
    assert_eq!(out.first(), Some(&21), "an alert record is queued: {out:?}");
}

#[test]
fn client_session_against_rustls_server() {
    let c = cert("localhost");
    let name = ServerName::try_from("localhost").unwrap();
    let mut ours = Ours::new(TlsSession::client(client_config(&c, &[b"echo"]), name).unwrap());
    let server = ServerConnection::new(server_config(&c, &[b"echo"])).unwrap();
    let mut peer = rustls::Connection::from(server);
    handshake(&mut ours, &mut peer, 3);
    assert_eq!(ours.session.alpn_protocol(), Some(&b"echo"[..]));
    let mut out = Vec::new();
    ours.session.send(b"hello", &mut out).unwrap();
    assert_eq!(give(&mut peer, &out).unwrap(), b"hello");
    peer.writer().write_all(b"world").unwrap();
    let wire = drain(&mut peer);
    ours.feed(&wire, 2).unwrap();
    assert_eq!(ours.plain, b"world");
}

#[test]
fn steady_state_output_needs_no_regrowth() {
    // The loop reuses one output vector: once it has grown to a record's size,
    // encrypting another of that size does not grow it.
    let (mut ours, _peer) = server_pair(1000);
    let mut out = Vec::with_capacity(8192);
    for _ in 0..100 {
        out.clear();
        ours.session.send(&[7u8; 4096], &mut out).unwrap();
    }
    assert_eq!(out.capacity(), 8192);
}
