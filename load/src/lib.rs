//! tether-load: a load generator built on tether's client engine.
