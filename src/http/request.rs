//! A request as a handler sees it: borrowed from the connection's input.

use super::framing::Head;

/// One HTTP request, parsed in place: the method, path, header names and
/// values and the body all borrow the connection's input (a chunked body is
/// the one exception: its data is gathered into a buffer the loop reuses).
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    pub(crate) head: Head<'r>,
    pub(crate) body: &'r [u8],
}

impl<'r> Request<'r> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'r str {
        self.head.method
    }

    /// The request target, e.g. `/plaintext?x=1`.
    pub fn path(&self) -> &'r str {
        self.head.path
    }

    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn minor_version(&self) -> u8 {
        self.head.minor
    }

    /// Every header, in order, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'r str, &'r [u8])> + 'r {
        self.head.headers.iter().map(|h| (h.name, h.value))
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'r [u8]> {
        self.head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The body (empty without one), complete: the handler runs only once
    /// all of it has arrived.
    pub fn body(&self) -> &'r [u8] {
        self.body
    }

    /// Whether the connection stays open after this request (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub fn keep_alive(&self) -> bool {
        self.head.keep_alive
    }

    /// The request asks to switch protocols (`Connection: upgrade` and an
    /// `Upgrade` header): answer with [`Response::upgrade`](super::Response::upgrade)
    /// to take the connection over.
    pub fn is_upgrade(&self) -> bool {
        self.head.upgrade
    }
}
