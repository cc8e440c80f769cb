//! Helpers shared by the tests.

use std::sync::Arc;
use std::time::Duration;

use rivet_agent::pace::{FakeClock, FixedJitter, Pacer};
use rivet_agent::settings::Settings;
use url::Url;

/// A token of the length Ironic hands out.
pub const TOKEN: &str = "b1n6iYWKJMPhgynm39scQduWgQuNbgo9_2q4Xr7eLgg";

/// Settings that talk to `urls`.
pub fn settings_for(urls: &[&Url]) -> Settings {
    Settings {
        api_urls: urls.iter().map(|url| (*url).clone()).collect(),
        http_request_timeout: Duration::from_secs(20),
        ..Settings::default()
    }
}

/// The URL of a loopback port nothing listens on (bound, then released).
pub fn closed_port_url(host: &str) -> Url {
    let listener = std::net::TcpListener::bind(format!("{host}:0")).expect("binding a port");
    let port = listener.local_addr().expect("a bound port").port();
    drop(listener);
    Url::parse(&format!("http://{host}:{port}")).expect("a URL")
}

/// A pacer on `clock` whose jitter always picks `fraction` of the range.
pub fn pacer(clock: Arc<FakeClock>, fraction: f64) -> Pacer {
    Pacer {
        clock,
        jitter: Arc::new(FixedJitter(fraction)),
    }
}

pub fn secs(list: &[Duration]) -> Vec<f64> {
    list.iter().map(Duration::as_secs_f64).collect()
}
