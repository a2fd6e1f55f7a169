//! A run written into the tools teams already watch: today Prometheus, by remote write
//! (`prometheus`), so a run's figures and fault windows sit beside the service's own dashboards.

pub mod prometheus;
