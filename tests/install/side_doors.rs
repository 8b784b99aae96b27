//! Nobody gets into gitwarden's running pods, cluster-admin included: exec,
//! attach, port-forward, cp and debug are refused by the webhook's
//! fail-closed gitwarden-system entry, so the agent's write credential
//! never leaves its pod.

use std::io::Read as _;
use std::time::Duration;

use gitwarden_tests::Identity;
use gitwarden_tests::install::{SYSTEM_NAMESPACE, jsonpath};

use crate::installed::{installed, leader_pod, steady};

/// Asserts that a refused kubectl said why: gitwarden's message.
fn assert_refused(what: &str, out: &gitwarden_tests::kubectl::KubectlOutput) {
    assert!(!out.success, "{what} was allowed: {out:?}");
    assert!(
        out.stderr
            .contains("nobody but gitwarden may exec, attach or port-forward"),
        "{what}: {}",
        out.stderr
    );
}

#[test]
fn admin_cannot_exec_attach_or_copy_into_the_agent_or_the_webhook() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    for pod in [leader_pod(node), "gitwarden-webhook-0".to_string()] {
        let exec = node.kubectl(
            Identity::Admin,
            &[
                "exec",
                "-n",
                SYSTEM_NAMESPACE,
                &pod,
                "--",
                "cat",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            ],
        );
        assert_refused(&format!("exec into {pod}"), &exec);
        assert!(
            !exec.stdout.contains("eyJ"),
            "a token leaked: {}",
            exec.stdout
        );

        let attach = node.kubectl(Identity::Admin, &["attach", "-n", SYSTEM_NAMESPACE, &pod]);
        assert_refused(&format!("attach to {pod}"), &attach);

        let target = std::env::temp_dir().join(format!("gitwarden-cp-{}", std::process::id()));
        let cp = node.kubectl(
            Identity::Admin,
            &[
                "cp",
                &format!(
                    "{SYSTEM_NAMESPACE}/{pod}:/var/run/secrets/kubernetes.io/serviceaccount/token"
                ),
                &target.display().to_string(),
            ],
        );
        assert_refused(&format!("cp from {pod}"), &cp);
        assert!(!target.exists(), "kubectl cp wrote {}", target.display());
    }
}

#[test]
fn admin_cannot_port_forward_to_the_agent() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    let pod = leader_pod(node);
    // kubectl port-forward upgrades the connection when the first client
    // connects: connect once, then read what kubectl says.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut forward =
        std::process::Command::new(gitwarden_tests::kubectl::kubectl_binary().unwrap())
            .arg("--kubeconfig")
            .arg(node.kubeconfig(Identity::Admin))
            .args([
                "port-forward",
                "-n",
                SYSTEM_NAMESPACE,
                &format!("pod/{pod}"),
                &format!("{port}:8080"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write as _;
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = conn.write_all(b"GET /status HTTP/1.0\r\n\r\n");
            let mut body = String::new();
            let _ = conn.read_to_string(&mut body);
            answered = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = forward.kill();
    let mut stderr = String::new();
    forward
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = forward.wait();
    assert!(
        !answered.unwrap_or_default().contains("HTTP/1"),
        "the agent answered through port-forward"
    );
    assert!(
        stderr.contains("nobody but gitwarden may exec, attach or port-forward"),
        "{stderr}"
    );
}

#[test]
fn admin_cannot_debug_gitwardens_pods_with_an_ephemeral_container() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    let pod = leader_pod(node);
    let debug = node.kubectl(
        Identity::Admin,
        &[
            "debug",
            "-n",
            SYSTEM_NAMESPACE,
            &pod,
            "--image=gitwarden.local/toolbox:dev",
            "--image-pull-policy=Never",
            "--target=agent",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert!(!debug.success, "kubectl debug was allowed: {debug:?}");
    assert!(debug.stderr.contains("denied"), "{}", debug.stderr);
    assert_eq!(
        jsonpath(
            node,
            &["pod", &pod, "-n", SYSTEM_NAMESPACE],
            "{.spec.ephemeralContainers}"
        ),
        ""
    );
}
