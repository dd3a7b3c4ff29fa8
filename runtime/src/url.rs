//! Percent-encoding of URL query values (a registry token's scope, a
//! Kubernetes list's resourceVersion and continue token): everything but
//! RFC 3986's unreserved characters. Ten lines; `url` or
//! `percent-encoding` would be a crate for them.

/// `value` percent-encoded for a query string.
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("eyJ2Ijo+/=="), "eyJ2Ijo%2B%2F%3D%3D");
        assert_eq!(percent_encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        assert_eq!(percent_encode("123"), "123");
    }
}
