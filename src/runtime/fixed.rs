//! The `static` runtime: fixed addresses that wakeway never starts or stops (sidecar mode, a plain
//! proxy in front of something already running). Resolved once when the service is built.

use std::net::{SocketAddr, ToSocketAddrs};

pub fn resolve(upstreams: &[String]) -> Result<Vec<SocketAddr>, String> {
    upstreams
        .iter()
        .map(|u| {
            u.to_socket_addrs()
                .map_err(|e| format!("upstream `{u}`: {e}"))?
                .next()
                .ok_or_else(|| format!("upstream `{u}` resolves to no address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolves_literal_and_localhost() {
        let v = super::resolve(&["127.0.0.1:3000".into(), "localhost:3001".into()]).unwrap();
        assert_eq!(v[0].port(), 3000);
        assert_eq!(v[1].port(), 3001);
        assert!(super::resolve(&["nope".into()]).is_err());
    }
}
