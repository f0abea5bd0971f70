//! tether-load against tether servers: echo and frame echo pass; a flipped
//! byte, a stall and an HTTP error status are each reported as they should be;
//! connections the server closes are redialed and counted.

mod util;

use util::{Echo, HttpStatus, frame_echo, json_number, run_json, serve, tether_load};

#[test]
fn echo_server_passes_every_check() {
    let server = serve(|_| Echo::default());
    let addr = server.addr.to_string();
    let (code, json, _) = run_json(
        "echo",
        &[
            "--addr",
            &addr,
            "--conns",
            "20",
            "--depth",
            "4",
            "--duration",
            "1s",
            "--loops",
            "1",
            "--size",
            "100",
        ],
    );
    assert_eq!(code, Some(0));
    assert!(json_number(&json, "requests") > 100.0);
    assert_eq!(json_number(&json, "errors"), 0.0);
    assert_eq!(json_number(&json, "up"), 20.0);
    assert!(json.contains("\"series\": [") && json.contains("\"p99_us\""));
    assert!(json_number(&json, "p999") >= json_number(&json, "p50"));
}

#[test]
fn frame_echo_passes_in_open_loop() {
    let server = frame_echo();
    let addr = server.addr.to_string();
    let (code, json, _) = run_json(
        "frame",
        &[
            "--addr",
            &addr,
            "--proto",
            "frame",
            "--conns",
            "10",
            "--rate",
            "2000",
            "--duration",
            "1s",
            "--size",
            "300",
        ],
    );
    assert_eq!(code, Some(0));
    let requests = json_number(&json, "requests");
    assert!(
        (1000.0..=3000.0).contains(&requests),
        "{requests} requests at 2000/s for 1 s"
    );
    assert_eq!(json_number(&json, "errors"), 0.0);
}

#[test]
fn a_flipped_byte_fails_the_run() {
    let server = serve(|_| Echo {
        flip_at: Some(1000),
        ..Echo::default()
    });
    let addr = server.addr.to_string();
    let (code, json, stdout) = run_json(
        "flip",
        &[
            "--addr",
            &addr,
            "--conns",
            "2",
            "--depth",
            "2",
            "--duration",
            "3s",
            "--size",
            "64",
        ],
    );
    assert_eq!(code, Some(1), "a verification failure exits 1");
    assert!(
        stdout.contains("FAILED") && stdout.contains("byte"),
        "{stdout}"
    );
    assert!(json_number(&json, "verify") >= 1.0);
}

#[test]
fn a_stalled_server_fails_the_run() {
    let server = serve(|_| Echo {
        stall: true,
        ..Echo::default()
    });
    let addr = server.addr.to_string();
    let (code, _, stdout) = run_json(
        "stall",
        &["--addr", &addr, "--conns", "2", "--duration", "30s"],
    );
    assert_eq!(code, Some(3), "a stall exits 3");
    assert!(stdout.contains("STALLED"), "{stdout}");
}

#[test]
fn closed_connections_are_redialed_and_counted() {
    let server = serve(|_| Echo {
        close_after: Some(64 * 50),
        ..Echo::default()
    });
    let addr = server.addr.to_string();
    let (code, json, _) = run_json(
        "close",
        &[
            "--addr",
            &addr,
            "--conns",
            "4",
            "--depth",
            "2",
            "--duration",
            "1s",
            "--size",
            "64",
        ],
    );
    assert_eq!(code, Some(0), "closes are counted, not fatal");
    assert!(json_number(&json, "reconnects") >= 4.0);
    assert!(json_number(&json, "closed") >= 4.0);
    assert!(json_number(&json, "connects") >= 8.0);
    assert!(json_number(&json, "requests") >= 4.0 * 50.0);
}

#[test]
fn http_error_statuses_are_counted() {
    let server = serve(|_| HttpStatus::new("500 Internal Server Error"));
    let addr = server.addr.to_string();
    let (code, json, _) = run_json(
        "http500",
        &[
            "--addr",
            &addr,
            "--proto",
            "http",
            "--conns",
            "4",
            "--depth",
            "8",
            "--duration",
            "1s",
            "--header",
            "X-Test: 1",
        ],
    );
    assert_eq!(code, Some(0));
    let requests = json_number(&json, "requests");
    assert!(requests > 10.0);
    assert_eq!(json_number(&json, "refused"), requests);
}

#[test]
fn held_connections_are_reported_up() {
    let server = serve(|_| Echo::default());
    let addr = server.addr.to_string();
    let (code, json, _) = run_json(
        "hold",
        &[
            "--addr",
            &addr,
            "--hold",
            "200",
            "--heartbeat-ms",
            "200",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(code, Some(0));
    assert_eq!(json_number(&json, "up"), 200.0);
    let heartbeats = json_number(&json, "requests");
    assert!(
        (200.0..=1200.0).contains(&heartbeats),
        "{heartbeats} heartbeats"
    );
}

#[test]
fn nothing_listening_exits_4_and_usage_errors_exit_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = tether_load(&[
        "--addr",
        &addr,
        "--conns",
        "2",
        "--duration",
        "300ms",
        "--no-reconnect",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(tether_load(&["--conns", "zero"]).status.code(), Some(2));
    let help = tether_load(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--resp-test"));
}
