//! The reference proxy: a plain TLS-terminating relay. It decrypts what a GBS client
//! sends, re-encrypts it towards the upstream and copies the answers back, with no
//! parsing: the floor any proxy between an HTTPS client and server pays. It runs as a
//! child process of the driver (`gateway __relay UPSTREAM_ADDR UPSTREAM_PIN`) so its
//! CPU time is measured apart from the clients'.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use swampgate::gbs::tls::{client_config, TlsIdentity};
use tokio::net::{TcpListener, TcpStream};

/// Buffer per direction: a few TLS records (16 KiB each), as a tuned proxy would use.
const COPY_BUFFER: usize = 64 * 1024;

/// Runs the relay until killed. Prints `relay port PORT` and `relay pin SPKIHASH`.
pub fn main(upstream: &str, upstream_pin: &str) {
    let pin: [u8; 32] = data_encoding::BASE64URL_NOPAD
        .decode(upstream_pin.as_bytes())
        .expect("upstream pin is base64url")
        .try_into()
        .expect("upstream pin is 32 bytes");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let identity = TlsIdentity::generate();
        let acceptor = identity.tls_acceptor().expect("relay TLS config");
        let connector = tokio_rustls::TlsConnector::from(client_config(pin));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        println!("relay port {}", listener.local_addr().unwrap().port());
        println!("relay pin {}", identity.spki_hash().unwrap());
        let upstream: Arc<str> = upstream.into();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, connector, upstream) =
                (acceptor.clone(), connector.clone(), upstream.clone());
            tokio::spawn(async move {
                tcp.set_nodelay(true).ok();
                let Ok(mut down) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(up_tcp) = TcpStream::connect(&*upstream).await else {
                    return;
                };
                up_tcp.set_nodelay(true).ok();
                let name = ServerName::try_from("127.0.0.1").expect("IP server name");
                let Ok(mut up) = connector.connect(name, up_tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut down,
                    &mut up,
                    COPY_BUFFER,
                    COPY_BUFFER,
                )
                .await;
            });
        }
    });
}
