//! The upgrade through tether's HTTP layer: a route answers a WebSocket
//! request with `101` and the connection becomes a WebSocket.

use std::borrow::BorrowMut;

use super::endpoint::{Endpoint, WsState};
use super::handshake::HandshakeError;
use crate::http::{Request, Response};

impl Endpoint {
    /// Answers `req` from inside a [`Server::serve`](crate::http::Server::serve)
    /// route: checks the upgrade, negotiates subprotocol and deflate, and
    /// answers `101 Switching Protocols` (`serve` then returns
    /// [`Served::Upgraded`](crate::http::Served::Upgraded); call
    /// [`Endpoint::serve`] right after it for the bytes that followed). A bad
    /// request is answered with 400 (426 for an unsupported version) and
    /// closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::borrow::{Borrow, BorrowMut};
    /// use tether::http::{HttpConn, Served, Server};
    /// use tether::ws::{Endpoint, Event, Message, WsState};
    /// use tether::{Action, Conn, EventHandler};
    ///
    /// #[derive(Default)]
    /// struct Link {
    ///     http: HttpConn,
    ///     ws: WsState,
    /// }
    /// impl Borrow<HttpConn> for Link { fn borrow(&self) -> &HttpConn { &self.http } }
    /// impl BorrowMut<HttpConn> for Link { fn borrow_mut(&mut self) -> &mut HttpConn { &mut self.http } }
    /// impl Borrow<WsState> for Link { fn borrow(&self) -> &WsState { &self.ws } }
    /// impl BorrowMut<WsState> for Link { fn borrow_mut(&mut self) -> &mut WsState { &mut self.ws } }
    ///
    /// struct App {
    ///     http: Server,
    ///     ws: Endpoint,
    /// }
    ///
    /// impl EventHandler for App {
    ///     type State = Link;
    ///
    ///     fn on_traffic(&mut self, conn: &mut Conn<'_, Link>) -> Action {
    ///         if !conn.state().http.is_upgraded() {
    ///             let ws = &self.ws;
    ///             let served = self.http.serve(conn, |req, res| match req.path() {
    ///                 "/ws" => {
    ///                     let _ = ws.upgrade(req, res);
    ///                 }
    ///                 _ => res.status(404).body(b""),
    ///             });
    ///             if served != Served::Upgraded {
    ///                 return Action::Continue;
    ///             }
    ///         }
    ///         self.ws.serve(conn, |ws, event| {
    ///             if let Event::Message(Message::Text(t)) = event {
    ///                 ws.send_text(t);
    ///             }
    ///         })
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// The [`HandshakeError`] the request was refused for.
    pub fn upgrade<S: BorrowMut<WsState>>(
        &self,
        req: &Request<'_>,
        res: &mut Response<'_, '_, S>,
    ) -> Result<(), HandshakeError> {
        let headers: Vec<(&str, &[u8])> = req.headers().collect();
        let mut answer: Vec<(&'static str, Vec<u8>)> = vec![("Upgrade", b"websocket".to_vec())];
        let mut state = WsState::default();
        let checked = self.accept(
            &mut state,
            req.method(),
            headers.iter().copied(),
            |name, value| {
                answer.push((name, value.to_vec()));
            },
        );
        match checked {
            Ok(()) => {
                *res.conn().state_mut().borrow_mut() = state;
                let list: Vec<(&str, &[u8])> = answer.iter().map(|(n, v)| (*n, &v[..])).collect();
                res.upgrade(&list);
                Ok(())
            }
            Err(e) => {
                if e == HandshakeError::Version {
                    res.status(426).header("Sec-WebSocket-Version", "13");
                } else {
                    res.status(400);
                }
                res.close().body(b"");
                Err(e)
            }
        }
    }
}
