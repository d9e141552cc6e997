//! The container image, built here with buildah from the repository's Dockerfile
//! (`BINARY_FROM=prebuilt`, fed the binary cargo just built, again with `cargo auditable`, and
//! its CycloneDX SBOM written beside it) and run with podman as the chart runs
//! the pod: uid 65532, read-only root filesystem, no capabilities, no privilege escalation. It
//! must serve /readyz and answer a review over TLS. Needs root, buildah, podman and runc (tests/setup.sh
//! installs them) and hadolint (tests/setup.sh installs it in $CARGO_TARGET_DIR/hadolint-venv).

#[path = "image/build.rs"]
mod build;
#[path = "image/checks.rs"]
mod checks;
#[path = "image/container.rs"]
mod container;
#[path = "image/tools.rs"]
mod tools;

use libtest_mimic::{Arguments, Failed, Trial};

fn sync_trial(name: &str, check: fn()) -> Trial {
    Trial::test(name, move || {
        check();
        Ok(())
    })
}

/// Run an async check on its own runtime, turning its panic into the trial's failure.
fn async_trial(name: &str, check: fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>) -> Trial {
    Trial::test(name, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check());
        Ok(())
    })
}

/// The image trials; each fails with the build's error if the image could not be built.
fn image_trials(built: &Result<(), String>) -> Vec<Trial> {
    let mut trials = vec![
        sync_trial("image_metadata", checks::image_metadata),
        sync_trial(
            "image_binary_embeds_its_dependency_list",
            checks::binary_embeds_its_dependency_list,
        ),
        sync_trial(
            "image_sbom_lists_the_dependencies",
            checks::sbom_lists_the_dependencies,
        ),
        sync_trial(
            "image_declares_its_debian_packages",
            checks::declares_its_debian_packages,
        ),
        sync_trial(
            "image_ephemeral_certificate_without_a_writable_tmp_fails_clearly",
            checks::ephemeral_certificate_without_a_writable_tmp_fails_clearly,
        ),
        async_trial("image_runs_hardened_with_mounted_certificates", || {
            Box::pin(checks::runs_hardened_with_mounted_certificates())
        }),
        async_trial("image_ephemeral_certificate_on_a_tmpfs", || {
            Box::pin(checks::ephemeral_certificate_on_a_tmpfs())
        }),
    ];
    if let Err(e) = built {
        trials = trials
            .into_iter()
            .map(|t| {
                let (name, e) = (t.name().to_owned(), e.clone());
                Trial::test(name, move || Err(Failed::from(e)))
            })
            .collect();
    }
    trials
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Arguments::from_args();
    let lint = sync_trial(
        "dockerfile_passes_hadolint",
        checks::dockerfile_passes_hadolint,
    );
    let probe = image_trials(&Ok(()));
    let wanted = probe.iter().any(|t| !filtered_out(&args, t.name()));
    if args.list || !wanted {
        let mut all = vec![lint];
        all.extend(probe);
        libtest_mimic::run(&args, all).exit();
    }
    let built = tools::require_container_tools().and_then(|()| build::build_image());
    let mut trials = vec![lint];
    trials.extend(image_trials(&built));
    let conclusion = libtest_mimic::run(&args, trials);
    build::remove_image();
    conclusion.exit();
}

/// Whether libtest-mimic's filter leaves `name` out (then the image need not be built).
fn filtered_out(args: &Arguments, name: &str) -> bool {
    let by_filter = args.filter.as_deref().is_some_and(|f| {
        if args.exact {
            name != f
        } else {
            !name.contains(f)
        }
    });
    let skipped = args.skip.iter().any(|s| {
        if args.exact {
            name == s
        } else {
            name.contains(s.as_str())
        }
    });
    by_filter || skipped
}
