//! A run shown in the tools teams already watch: Prometheus, by remote write (`prometheus`), so a
//! run's figures and fault windows sit beside the service's own dashboards; and a page on a local
//! address that shows the run while it goes (`live`).

pub mod live;
pub mod prometheus;
