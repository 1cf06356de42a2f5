//! The HTTPS client every SDK client of the function shares, and the roots it trusts.
//!
//! AWS's service endpoints (Connect, SQS, DynamoDB; their FIPS, dual-stack and VPC
//! endpoint names alike) present certificates of Amazon Trust Services. Without
//! `SSL_CERT_FILE` the client trusts those roots only, compiled in: no CA bundle is
//! read at start-up (about 140 certificates, the largest piece of the function's
//! start-up) and no other CA can vouch for an AWS endpoint. With `SSL_CERT_FILE` set
//! (a TLS-inspecting proxy, a private CA, a local emulator over HTTPS) the client
//! trusts exactly the certificates of that file, as the SDK's default client does.

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Amazon Root CA 1–4 and Starfield Services Root Certificate Authority – G2 (which
/// cross-signs Amazon Root CA 1 for older chains).
pub const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../../certs/amazon-trust-services.pem");

/// A client like the SDK's default (rustls on aws-lc, proxies from the environment)
/// that trusts Amazon Trust Services' roots only. For a function without
/// `SSL_CERT_FILE`; with it, the SDK's default client reads that file.
pub fn amazon_roots_client() -> SharedHttpClient {
    let context = TlsContext::builder()
        .with_trust_store(
            TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(AMAZON_TRUST_SERVICES),
        )
        .build()
        .expect("a trust store of PEM certificates only");
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_the_five_of_amazon_trust_services() {
        let pem = std::str::from_utf8(AMAZON_TRUST_SERVICES).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ] {
            assert!(pem.contains(&format!("# {name}\n")), "{name}");
        }
    }
}
