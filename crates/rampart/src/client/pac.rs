//! Proxy replacement: while connected, a PAC file sends names under the VPN's domains (and
//! addresses in its subnets) DIRECT (they go through the tunnel) and everything else to the
//! proxy the profile names, or DIRECT without one. Written to `pac_file` and, with
//! `pac_listen`, served over HTTP on that local address.

use std::net::SocketAddr;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The PAC text. `proxy` is `host:port` of the proxy for everything else (`None`: DIRECT).
pub fn pac(domains: &[String], subnets: &[IpNet], proxy: Option<&str>) -> String {
    let mut out = String::from("function FindProxyForURL(url, host) {\n");
    out.push_str("  if (isPlainHostName(host)) return \"DIRECT\";\n");
    for d in domains {
        let d = d.trim_matches('.').replace(['"', '\\'], "");
        out.push_str(&format!(
            "  if (host == \"{d}\" || dnsDomainIs(host, \".{d}\")) return \"DIRECT\";\n"
        ));
    }
    for net in subnets.iter().filter_map(|n| match n {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }) {
        out.push_str(&format!(
            "  if (isInNet(host, \"{}\", \"{}\")) return \"DIRECT\";\n",
            net.network(),
            net.netmask()
        ));
    }
    match proxy {
        Some(p) => out.push_str(&format!("  return \"PROXY {p}; DIRECT\";\n}}\n")),
        None => out.push_str("  return \"DIRECT\";\n}\n"),
    }
    out
}

/// Serves `text` as `application/x-ns-proxy-autoconfig` to every HTTP request on `listener`
/// until the task is aborted.
pub async fn serve(listener: TcpListener, text: String) {
    let text = std::sync::Arc::new(text);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let text = text.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 2048];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request))
                    .await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the PAC listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpn_domains_direct_the_rest_to_the_proxy() {
        let text = pac(
            &["corp.example".into()],
            &["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
            Some("proxy.example:3128"),
        );
        assert_eq!(
            text,
            "function FindProxyForURL(url, host) {\n\
             \x20 if (isPlainHostName(host)) return \"DIRECT\";\n\
             \x20 if (host == \"corp.example\" || dnsDomainIs(host, \".corp.example\")) return \"DIRECT\";\n\
             \x20 if (isInNet(host, \"10.1.0.0\", \"255.255.0.0\")) return \"DIRECT\";\n\
             \x20 return \"PROXY proxy.example:3128; DIRECT\";\n}\n"
        );
        assert!(pac(&[], &[], None).ends_with("  return \"DIRECT\";\n}\n"));
    }

    #[tokio::test]
    async fn served_over_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, "PACTEXT".into()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /proxy.pac HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(answer.contains("application/x-ns-proxy-autoconfig"));
        assert!(answer.ends_with("\r\n\r\nPACTEXT"));
        task.abort();
    }
}
