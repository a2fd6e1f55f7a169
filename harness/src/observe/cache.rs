//! Redis's own view: commands processed and keyspace hits and misses (`INFO stats`), read through the
//! port published on 127.0.0.1 while Redis is up. While it is down (the cache-outage fault) the
//! seconds simply go without these figures.

use std::time::Duration;

/// Cumulative counters at one reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheCounters {
    /// Includes this probe's one `INFO` a second.
    pub commands: f64,
    pub hits: f64,
    pub misses: f64,
}

/// The counters in an `INFO stats` reply (`name:value` lines); `None` when one is missing.
pub fn parse(info: &str) -> Option<CacheCounters> {
    let field = |name: &str| {
        info.lines().find_map(|line| {
            line.trim()
                .strip_prefix(name)?
                .strip_prefix(':')?
                .parse::<f64>()
                .ok()
        })
    };
    Some(CacheCounters {
        commands: field("total_commands_processed")?,
        hits: field("keyspace_hits")?,
        misses: field("keyspace_misses")?,
    })
}

#[derive(Debug)]
pub struct CacheProbe {
    conn: redis::aio::MultiplexedConnection,
}

impl CacheProbe {
    pub async fn connect(url: &str, deadline: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(deadline))
            .set_response_timeout(Some(deadline));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Self { conn })
    }

    pub async fn read(&mut self) -> Result<Option<CacheCounters>, redis::RedisError> {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut self.conn)
            .await?;
        Ok(parse(&info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counters_from_info_stats() {
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1520\r\n\
                    keyspace_hits:1200\r\nkeyspace_misses:80\r\n";
        assert_eq!(
            parse(info),
            Some(CacheCounters {
                commands: 1520.0,
                hits: 1200.0,
                misses: 80.0
            })
        );
        assert_eq!(parse("# Stats\r\ntotal_commands_processed:1\r\n"), None);
    }
}
