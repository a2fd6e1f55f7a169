//! The topology: it starts, is ready, binds only 127.0.0.1, and leaves nothing behind.

use fortress::env::Lab;
use fortress::env::docker::DockerClient;

use crate::start_lab;

async fn containers_of(docker: &DockerClient, run: &str) -> usize {
    docker.labelled_containers(Some(run)).await.unwrap().len()
}

#[tokio::test]
async fn the_lab_starts_ready_on_loopback_only_and_shutdown_removes_it() {
    let lab = start_lab().await;
    let (status, body) = lab.readiness(1).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "{body}");
    assert_eq!(
        lab.images.len(),
        3,
        "every image choice is recorded: {:?}",
        lab.images
    );
    eprintln!("lab ready in {:?}", lab.ready_in);

    crate::assert_loopback_only(&lab, 4, "postgres, redis, proxy, service").await;
    let docker = DockerClient::connect().await.unwrap();

    let run_id = lab.run_id.clone();
    let removed = lab.shutdown().await.unwrap();
    assert_eq!(removed.containers.len(), 4, "{removed}");
    assert_eq!(removed.networks.len(), 1, "{removed}");
    assert_eq!(containers_of(&docker, &run_id).await, 0);
}

#[tokio::test]
async fn dropping_a_lab_without_shutdown_removes_its_containers() {
    let lab: Lab = start_lab().await;
    let run_id = lab.run_id.clone();
    let docker = DockerClient::connect().await.unwrap();
    assert_eq!(containers_of(&docker, &run_id).await, 4);
    drop(lab);
    assert_eq!(
        containers_of(&docker, &run_id).await,
        0,
        "Drop cleans up (as after an error or a panic)"
    );
    assert!(docker.labelled_networks(Some(&run_id)).await.unwrap().is_empty());
}
