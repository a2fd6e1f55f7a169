//! The containers of a lab (roles) and the links the fault proxy carries between the service and its
//! dependencies. A link is named after the dependency it leads to.

/// A container of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Postgres,
    Redis,
    /// The network fault proxy between the service and its dependencies.
    Proxy,
    /// Service replica `n`, from 1.
    Service(u32),
    /// The load balancer (HAProxy) in front of the replicas, when a lab has one.
    Balancer,
    /// The mail server (Postfix) the outbox sends confirmations to, when a lab has one.
    Mail,
    /// The payment provider stand-in (`fortress provider`) checkouts authorise payments with, when a
    /// lab has one.
    Provider,
}

/// A role name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "there is no {0:?} in the lab (roles: postgres, redis, mail, provider, proxy, service, service-2, ..., balancer)"
)]
pub struct UnknownRole(pub String);

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres => f.write_str("postgres"),
            Self::Redis => f.write_str("redis"),
            Self::Proxy => f.write_str("proxy"),
            Self::Service(1) => f.write_str("service"),
            Self::Service(n) => write!(f, "service-{n}"),
            Self::Balancer => f.write_str("balancer"),
            Self::Mail => f.write_str("mail"),
            Self::Provider => f.write_str("provider"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(link) = s.parse::<Link>() {
            return Ok(link.role());
        }
        match s {
            "proxy" => Ok(Self::Proxy),
            "balancer" => Ok(Self::Balancer),
            "provider" => Ok(Self::Provider),
            "service" | "service-1" => Ok(Self::Service(1)),
            other => other
                .strip_prefix("service-")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .map(Self::Service)
                .ok_or_else(|| UnknownRole(other.to_owned())),
        }
    }
}

impl Role {
    /// The proxy's link to this role, if the service reaches it through one.
    pub fn link(self) -> Option<Link> {
        Link::ALL.iter().copied().find(|l| l.role() == self)
    }
}

closed_set::closed_set! {
    /// A link of the fault proxy: the service's connection to one dependency.
    pub enum Link, "link" {
        Postgres = "postgres": "the service's connections to Postgres",
        Redis = "redis": "the service's connections to Redis",
        Mail = "mail": "the service's SMTP connections to the mail server (labs with one)",
        Payments = "payments": "the service's HTTP calls to the payment provider (labs with one)",
    }
}

impl Link {
    /// The container at the far end of the link.
    pub fn role(self) -> Role {
        match self {
            Self::Postgres => Role::Postgres,
            Self::Redis => Role::Redis,
            Self::Mail => Role::Mail,
            Self::Payments => Role::Provider,
        }
    }

    /// Whether the link carries HTTP/1.1, so HTTP faults apply to it.
    pub fn carries_http(self) -> bool {
        self == Self::Payments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_links_read_as_they_are_written() {
        for role in [
            Role::Postgres,
            Role::Redis,
            Role::Proxy,
            Role::Service(1),
            Role::Service(3),
            Role::Balancer,
            Role::Mail,
            Role::Provider,
        ] {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        }
        assert_eq!("service-1".parse::<Role>().unwrap(), Role::Service(1));
        assert!("service-0".parse::<Role>().is_err());
        let error = "mysql".parse::<Role>().unwrap_err().to_string();
        assert!(
            error.contains("postgres, redis, mail, provider, proxy, service"),
            "{error}"
        );
        assert_eq!("payments".parse::<Role>().unwrap(), Role::Provider);
        assert_eq!(Role::Redis.link(), Some(Link::Redis));
        assert_eq!(Role::Proxy.link(), None);
        let error = "mysql".parse::<Link>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown link \"mysql\"; links: postgres, redis, mail, payments"
        );
    }
}
