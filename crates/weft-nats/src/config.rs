//! Configuration of the NATS front end, with nats-server's defaults.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::Limits;

/// How clients authenticate.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may connect.
    #[default]
    None,
    /// `CONNECT` must carry `auth_token` equal to this token.
    Token(String),
    /// `CONNECT` must carry this `user` and `pass`.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a secret.
        match self {
            Auth::None => write!(f, "None"),
            Auth::Token(_) => write!(f, "Token(..)"),
            Auth::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, .. }}"),
        }
    }
}

impl Auth {
    /// Whether clients must authenticate.
    pub fn required(&self) -> bool {
        !matches!(self, Auth::None)
    }

    /// Whether the credentials of a `CONNECT` satisfy this policy.
    pub fn accepts(&self, c: &crate::proto::json::ConnectOptions) -> bool {
        match self {
            Auth::None => true,
            Auth::Token(t) => c.auth_token.as_deref().is_some_and(|given| ct_eq(given, t)),
            Auth::UserPassword { user, password } => {
                // Evaluate both, so timing does not tell which one failed.
                let u = c.user.as_deref().is_some_and(|given| ct_eq(given, user));
                let p = c.pass.as_deref().is_some_and(|given| ct_eq(given, password));
                u & p
            }
        }
    }
}

/// Compares in time that depends on the lengths only.
fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Everything a [`crate::NatsServer`] needs.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// Address to accept clients on.
    pub listen: SocketAddr,
    /// `host:port` other nodes advertise for this server in `connect_urls`
    /// [default: the bound address, an unspecified IP replaced by the
    /// node's cluster IP].
    pub advertise: Option<String>,
    /// Largest payload (headers included) a client may publish; advertised
    /// in `INFO` [1 MiB].
    pub max_payload: usize,
    /// Longest control line [4096].
    pub max_control_line: usize,
    /// Outbound bytes queued for one client before it is a slow consumer
    /// and is closed [64 MiB].
    pub max_pending: usize,
    /// A write to a client socket stalled this long makes it a slow
    /// consumer [10 s].
    pub write_deadline: Duration,
    /// The server pings each client this often [2 min].
    pub ping_interval: Duration,
    /// A client with this many pings unanswered is closed as stale [2].
    pub max_pings_out: u32,
    /// A client that must authenticate has this long to send `CONNECT`
    /// [2 s].
    pub auth_timeout: Duration,
    /// Authentication [none].
    pub auth: Auth,
    /// Subscriptions one client may hold [65536].
    pub max_subscriptions: usize,
    /// Clients served at once; more are refused at accept [65536].
    pub max_connections: usize,
    /// How long a `PING` that follows `SUB`/`UNSUB` waits for every live
    /// node to apply the interest change before its `PONG` is sent anyway
    /// (counted in `weft_nats_interest_barrier_timeouts_total`) [5 s].
    pub interest_barrier_timeout: Duration,
}

impl NatsConfig {
    /// A configuration listening on `listen` with every default.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            advertise: None,
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            write_deadline: Duration::from_secs(10),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            auth_timeout: Duration::from_secs(2),
            auth: Auth::None,
            max_subscriptions: 65536,
            max_connections: 65536,
            interest_barrier_timeout: Duration::from_secs(5),
        }
    }

    /// The parser limits of this configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            max_control_line: self.max_control_line,
            max_payload: self.max_payload,
        }
    }

    /// Checks the values; the message names the bad field.
    pub fn validate(&self) -> Result<(), crate::NatsError> {
        let bad = |what: &str| Err(crate::NatsError::Config(what.to_string()));
        if self.max_payload == 0 || self.max_payload > 64 * 1024 * 1024 {
            return bad("max_payload must be 1 byte to 64 MiB");
        }
        if self.max_control_line < 64 {
            return bad("max_control_line must be at least 64");
        }
        if self.max_pending < self.max_payload {
            return bad("max_pending must be at least max_payload");
        }
        if self.ping_interval.is_zero() || self.write_deadline.is_zero() || self.auth_timeout.is_zero() {
            return bad("ping_interval, write_deadline and auth_timeout must be positive");
        }
        if self.interest_barrier_timeout.is_zero() {
            return bad("interest_barrier_timeout must be positive");
        }
        if self.max_pings_out == 0 || self.max_subscriptions == 0 || self.max_connections == 0 {
            return bad("max_pings_out, max_subscriptions and max_connections must be positive");
        }
        Ok(())
    }
}
