//! `tether-load`: drives load against a server (see the crate docs).

fn main() {
    println!("tether-load");
}
