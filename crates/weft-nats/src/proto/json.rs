//! The JSON bodies of `INFO` (server → client) and `CONNECT` (client →
//! server).

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

/// The `INFO` a client gets on accept (the fields nats-server sends that
/// matter to clients of a core-NATS server).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ServerInfo {
    /// Unique id of this server (weft: node name and incarnation).
    pub server_id: String,
    /// Human name (weft: the node name).
    pub server_name: String,
    /// Server version.
    pub version: String,
    /// What nats-server reports as its Go version: here `weft`.
    pub go: String,
    /// Host the client port is bound to.
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Headers supported (always true).
    pub headers: bool,
    /// Largest payload accepted, headers included.
    pub max_payload: usize,
    /// Protocol version (1: the server may send async INFO).
    pub proto: u8,
    /// The id of this connection.
    pub client_id: u64,
    /// Whether the client must authenticate in CONNECT.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// The address of this client as the server sees it.
    pub client_ip: String,
    /// Client addresses (`host:port`) of the other nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
}

impl ServerInfo {
    /// Appends `INFO {json}\r\n`.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(b"INFO ");
        // Plain strings, numbers and lists always serialise; a failure is a
        // bug to see, not an empty INFO to send.
        out.put_slice(&serde_json::to_vec(self).expect("INFO serialises to JSON"));
        out.put_slice(b"\r\n");
    }
}

/// The `CONNECT` options weft reads; unknown fields are ignored (as
/// nats-server does), missing ones take nats-server's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConnectOptions {
    /// Answer every operation with `+OK`.
    pub verbose: bool,
    /// Strict checks: publish subjects are validated and refused with
    /// `-ERR 'Invalid Publish Subject'`.
    pub pedantic: bool,
    /// Deliver the client's own publishes to its subscriptions.
    pub echo: bool,
    /// The client understands `HMSG`.
    pub headers: bool,
    /// The client wants a 503 status message for a request nobody can
    /// answer (requires `headers`).
    pub no_responders: bool,
    /// Token authentication.
    pub auth_token: Option<String>,
    /// User name authentication.
    pub user: Option<String>,
    /// Password authentication.
    pub pass: Option<String>,
    /// Client name (for logs).
    pub name: Option<String>,
    /// Client library language (for logs).
    pub lang: Option<String>,
    /// Client library version (for logs).
    pub version: Option<String>,
    /// Client protocol version.
    pub protocol: i64,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            verbose: false,
            pedantic: false,
            echo: true,
            headers: false,
            no_responders: false,
            auth_token: None,
            user: None,
            pass: None,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
        }
    }
}

impl ConnectOptions {
    /// Parses a CONNECT body.
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_defaults_and_unknown_fields() {
        let c =
            ConnectOptions::parse(br#"{"verbose":true,"jwt":null,"protocol":1,"headers":true}"#).expect("ok");
        assert!(c.verbose && c.echo && c.headers && !c.no_responders);
        assert_eq!(c.protocol, 1);
        assert!(ConnectOptions::parse(b"{not json").is_err());
    }

    #[test]
    fn info_line() {
        let mut out = BytesMut::new();
        ServerInfo {
            server_id: "n1".into(),
            max_payload: 10,
            ..Default::default()
        }
        .write(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("INFO {\"server_id\":\"n1\""), "{text}");
        assert!(text.ends_with("}\r\n"));
        assert!(!text.contains("connect_urls") && !text.contains("auth_required"));
    }
}
