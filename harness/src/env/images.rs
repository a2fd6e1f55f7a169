//! Which image each role runs, and why: the choice is printed and recorded with every run.
//!
//! Postgres and Redis: the image the user names, else `fortress/postgres:15` / `fortress/redis:7` as
//! `ci/setup` made them (thin images on the official ones where a registry was reachable, built offline
//! from Debian packages otherwise; the image's `fortress.image.source` label says which). The service and
//! the fault proxy run the `fortress` binary itself (`fortress service`, `fortress proxy`) on
//! `fortress/runtime:bookworm`, in a `fortress/lab` image tagged by the binary's content hash, so the
//! code in the containers is always the code that is running the lab.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::docker::{DockerClient, DockerError};

pub const POSTGRES_DEFAULT: &str = "fortress/postgres:15";
pub const REDIS_DEFAULT: &str = "fortress/redis:7";
pub const RUNTIME_BASE: &str = "fortress/runtime:bookworm";
pub const BALANCER_DEFAULT: &str = "fortress/haproxy:2.6";
pub const MAIL_DEFAULT: &str = "fortress/postfix:3.7";
const SOURCE_LABEL: &str = "fortress.image.source";

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ImageChoice {
    pub role: String,
    pub image: String,
    /// `official`, `offline`, `user` (named on the command line) or `lab-binary` (built from this binary);
    /// on a user's target, `compose` (its Compose file's) or `variant` (the variant's `images`).
    pub source: String,
}

impl std::fmt::Display for ImageChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<13} {} ({})", self.role, self.image, self.source)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "image {image} for {role} is not on this machine: run `ci/setup` (it pulls the official images \
             where a registry is reachable and builds them offline from Debian packages otherwise){hint}"
    )]
    Missing {
        role: String,
        image: String,
        hint: String,
    },
    #[error("cannot read the lab binary {}", path.display())]
    Binary { path: PathBuf, source: std::io::Error },
    #[error("building the lab image {image} failed: {detail}")]
    Build { image: String, detail: String },
    #[error("cannot run the docker CLI to build the lab image")]
    DockerCli {
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Docker(#[from] DockerError),
}

/// Resolves the image of a dependency role: the user's, else the default made by `ci/setup`.
pub async fn resolve(
    docker: &DockerClient,
    role: &str,
    default: &str,
    named: Option<&str>,
) -> Result<ImageChoice, ImageError> {
    let (image, named) = named.map_or((default, false), |n| (n, true));
    if !docker.image_exists(image).await? {
        let hint = if named {
            String::new()
        } else {
            format!(", or name another image with --{role}-image")
        };
        return Err(ImageError::Missing {
            role: role.into(),
            image: image.into(),
            hint,
        });
    }
    let source = if named {
        "user".to_owned()
    } else {
        docker
            .image_label(image, SOURCE_LABEL)
            .await?
            .unwrap_or_else(|| "unknown".into())
    };
    Ok(ImageChoice {
        role: role.into(),
        image: image.into(),
        source,
    })
}

/// A content hash of the binary (the first 64 bits of its SHA-256, whose compression runs optimised
/// even in a dev build; SipHash here ran at opt-level 0, 0.6 s for the debug binary): the tag of the
/// lab image made from it.
///
/// Read once per process for a given file (path, size and modification time): a gate starts thirty
/// labs, two at a time under one build lock.
fn content_hash(path: &Path) -> Result<String, std::io::Error> {
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static HASHES: std::sync::Mutex<Vec<(Key, String)>> = std::sync::Mutex::new(Vec::new());
    let meta = std::fs::metadata(path)?;
    let key: Key = (path.to_owned(), meta.len(), meta.modified().ok());
    let known = |hashes: &Vec<(Key, String)>| hashes.iter().find(|(k, _)| *k == key).map(|(_, h)| h.clone());
    if let Some(hash) = known(&HASHES.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(hash);
    }
    let hash = hash_file(path)?;
    HASHES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, hash.clone()));
    Ok(hash)
}

fn hash_file(path: &Path) -> Result<String, std::io::Error> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The images of one lab: Postgres, Redis, the lab binary's (service replicas and proxy), and the
/// balancer's and the mail server's when the lab has them.
#[derive(Debug, Clone)]
pub struct LabImages {
    pub postgres: ImageChoice,
    pub redis: ImageChoice,
    pub lab: ImageChoice,
    pub balancer: Option<ImageChoice>,
    pub mail: Option<ImageChoice>,
}

impl LabImages {
    pub fn all(&self) -> impl Iterator<Item = &ImageChoice> {
        [&self.postgres, &self.redis, &self.lab]
            .into_iter()
            .chain(self.balancer.as_ref())
            .chain(self.mail.as_ref())
    }
}

/// Resolves and, for the lab binary, builds what `spec` needs.
pub async fn for_lab(docker: &DockerClient, spec: &super::LabSpec) -> Result<LabImages, ImageError> {
    Ok(LabImages {
        postgres: resolve(
            docker,
            "postgres",
            POSTGRES_DEFAULT,
            spec.postgres_image.as_deref(),
        )
        .await?,
        redis: resolve(docker, "redis", REDIS_DEFAULT, spec.redis_image.as_deref()).await?,
        lab: lab_image(docker, &spec.lab_binary).await?,
        balancer: match spec.balancer {
            Some(_) => Some(resolve(docker, "balancer", BALANCER_DEFAULT, None).await?),
            None => None,
        },
        mail: match spec.mail {
            true => Some(resolve(docker, "mail", MAIL_DEFAULT, None).await?),
            false => None,
        },
    })
}

/// One lab image build at a time in this process: labs started together would build the same tag twice.
static LAB_IMAGE_BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `fortress/lab` image holding `binary`, built on the runtime base if it does not exist yet.
pub async fn lab_image(docker: &DockerClient, binary: &Path) -> Result<ImageChoice, ImageError> {
    let _building = LAB_IMAGE_BUILD.lock().await;
    let binary_error = |source| ImageError::Binary {
        path: binary.to_owned(),
        source,
    };
    let tag = content_hash(binary).map_err(binary_error)?;
    let choice = ImageChoice {
        role: "service".into(),
        image: format!("fortress/lab:{tag}"),
        source: "lab-binary".into(),
    };
    if docker.image_exists(&choice.image).await? {
        return Ok(choice);
    }
    if !docker.image_exists(RUNTIME_BASE).await? {
        return Err(ImageError::Missing {
            role: "runtime".into(),
            image: RUNTIME_BASE.into(),
            hint: String::new(),
        });
    }
    // A context of its own: another process may be building the same tag right now.
    let context = std::env::temp_dir().join(format!(
        "fortress-lab-image-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    write_context(&context, binary).map_err(binary_error)?;
    let built = docker_build(&choice.image, &context).await;
    let _ = std::fs::remove_dir_all(&context);
    built?;
    // Each build of the binary makes a new tag; the older ones only take disk space.
    if let Ok(removed) = docker.prune_tags("fortress/lab", &choice.image).await
        && !removed.is_empty()
    {
        tracing::info!(?removed, "removed lab images of earlier builds");
    }
    Ok(choice)
}

/// A build context: the binary (hard-linked where it can be) and a Dockerfile on the runtime base.
fn write_context(context: &Path, binary: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(context)?;
    let target = context.join("fortress");
    if std::fs::hard_link(binary, &target).is_err() {
        std::fs::copy(binary, &target)?;
    }
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {RUNTIME_BASE}\nLABEL {SOURCE_LABEL}=lab-binary\nCOPY fortress /usr/local/bin/fortress\n\
             ENTRYPOINT [\"/usr/local/bin/fortress\"]\n"
        ),
    )
}

/// `docker build` with the CLI's classic builder: the same on Debian's docker 20.10 and on newer engines.
async fn docker_build(image: &str, context: &Path) -> Result<(), ImageError> {
    docker_build_with(image, context, Vec::new()).await
}

/// `docker build` of a target's service: its context, and `--file` and `--build-arg`s as its Compose
/// file says.
pub async fn build_for_target(
    image: &str,
    context: &Path,
    dockerfile: Option<&Path>,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<(), ImageError> {
    let mut options = Vec::new();
    if let Some(file) = dockerfile {
        options.extend(["--file".to_owned(), context.join(file).display().to_string()]);
    }
    for (key, value) in args {
        options.extend(["--build-arg".to_owned(), format!("{key}={value}")]);
    }
    docker_build_with(image, context, options).await
}

async fn docker_build_with(image: &str, context: &Path, options: Vec<String>) -> Result<(), ImageError> {
    let (tag, dir) = (image.to_owned(), context.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("docker")
            .args(["build", "-q", "-t", &tag])
            .args(&options)
            .arg(&dir)
            .env("DOCKER_BUILDKIT", "0")
            .output()
    })
    .await
    .map_err(|_| ImageError::Build {
        image: image.into(),
        detail: "the build task panicked".into(),
    })?
    .map_err(|source| ImageError::DockerCli { source })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ImageError::Build {
            image: image.into(),
            detail: String::from_utf8_lossy(&output.stderr).trim().into(),
        })
    }
}
