//! `[auth]` and the connection-level limits of `[limits]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Source;
use super::units::DurationValue;
use super::ConfigError;

/// `[auth]`: who may connect and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Clients without a user name may connect; default true only while no `password_file` is set.
    pub allow_anonymous: bool,
    /// `user:hash` lines made by `holdfast passwd`; when set, a client giving a user name must give
    /// its password.
    pub password_file: Option<PathBuf>,
    /// TOML file of ACL rules (docs/security.md); when set, everything not allowed is denied.
    pub acl_file: Option<PathBuf>,
    /// On TLS listeners with `client_ca`, the client certificate's Common Name (or first DNS name)
    /// is the user name, and the certificate stands in for a password.
    pub use_identity_as_username: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
            use_identity_as_username: false,
        }
    }
}

/// Connection-level limits from `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// Concurrent connections from one IP address; 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// New connections per second from one IP address (burst of the same size); 0 = unlimited.
    pub connect_rate_per_ip: u32,
    /// Inbound PUBLISH packets per second per connection (burst of the same size); 0 = unlimited.
    pub max_publish_rate: u32,
    /// How long a new connection may take to complete its TLS/WebSocket handshake and CONNECT.
    pub connect_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections_per_ip: 0,
            connect_rate_per_ip: 0,
            max_publish_rate: 0,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawAuth {
    allow_anonymous: Option<bool>,
    password_file: Option<Spanned<PathBuf>>,
    acl_file: Option<Spanned<PathBuf>>,
    use_identity_as_username: Option<bool>,
}

impl RawAuth {
    pub(super) fn validate(self, src: &Source) -> Result<AuthConfig, ConfigError> {
        let mut auth = AuthConfig::default();
        for (name, value) in [
            ("password_file", &self.password_file),
            ("acl_file", &self.acl_file),
        ] {
            if let Some(v) = value {
                if v.get_ref().as_os_str().is_empty() {
                    return Err(src.invalid(Some(v.span()), format!("auth.{name}"), "empty path"));
                }
            }
        }
        auth.allow_anonymous = self.allow_anonymous.unwrap_or(self.password_file.is_none());
        auth.password_file = self.password_file.map(Spanned::into_inner);
        auth.acl_file = self.acl_file.map(Spanned::into_inner);
        auth.use_identity_as_username = self.use_identity_as_username.unwrap_or(false);
        Ok(auth)
    }
}

/// Builds [`ConnLimits`] from the `[limits]` keys it owns.
pub(super) fn conn_limits(
    max_connections_per_ip: Option<usize>,
    connect_rate_per_ip: Option<u32>,
    max_publish_rate: Option<u32>,
    connect_timeout: Option<&Spanned<DurationValue>>,
    src: &Source,
) -> Result<ConnLimits, ConfigError> {
    let mut limits = ConnLimits::default();
    if let Some(t) = connect_timeout {
        if t.get_ref().0.is_zero() {
            return Err(src.invalid(
                Some(t.span()),
                "limits.connect_timeout",
                "must be longer than 0: no client could connect",
            ));
        }
        limits.connect_timeout = t.get_ref().0;
    }
    limits.max_connections_per_ip = max_connections_per_ip.unwrap_or(0);
    limits.connect_rate_per_ip = connect_rate_per_ip.unwrap_or(0);
    limits.max_publish_rate = max_publish_rate.unwrap_or(0);
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml_str(text, "holdfast.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn allow_anonymous_defaults_to_false_only_with_a_password_file() {
        let c = parse("").unwrap();
        assert!(c.auth.allow_anonymous);
        let c = parse("[auth]\npassword_file = \"pw\"\n").unwrap();
        assert!(!c.auth.allow_anonymous);
        assert_eq!(c.auth.password_file.as_deref(), Some("pw".as_ref()));
        let c = parse("[auth]\npassword_file = \"pw\"\nallow_anonymous = true\n").unwrap();
        assert!(c.auth.allow_anonymous);
        let c =
            parse("[auth]\nacl_file = \"acl.toml\"\nuse_identity_as_username = true\n").unwrap();
        assert!(c.auth.use_identity_as_username && c.auth.allow_anonymous);
    }

    #[test]
    fn auth_errors_name_key_and_line() {
        let e = parse("\n[auth]\npassword_file = \"\"\n").unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("auth.password_file"),
            "{e}"
        );
        let e = parse("[auth]\nallow_anonymus = true\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("allow_anonymus"), "{e}");
        let e = parse("[auth]\nallow_anonymous = \"no\"\n").unwrap_err();
        assert!(e.contains("auth.allow_anonymous"), "{e}");
    }

    #[test]
    fn connection_limits() {
        let c = parse(
            "[limits]\nmax_connections_per_ip = 10\nconnect_rate_per_ip = 5\n\
             max_publish_rate = 100\nconnect_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(c.conn_limits.max_connections_per_ip, 10);
        assert_eq!(c.conn_limits.connect_rate_per_ip, 5);
        assert_eq!(c.conn_limits.max_publish_rate, 100);
        assert_eq!(c.conn_limits.connect_timeout.as_secs(), 3);
        let e = parse("[limits]\n\nconnect_timeout = 0\n").unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("limits.connect_timeout"),
            "{e}"
        );
        let e = parse("[limits]\nmax_publish_rate = -1\n").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("limits.max_publish_rate"),
            "{e}"
        );
    }
}
