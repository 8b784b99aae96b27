//! `kubectl logs`, `exec` and `port-forward` as admin: kube-apiserver calls the
//! kubelet API on the node IP with its own client certificate, and the kubelet
//! authorises that with the API server, as on a real cluster.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use gitwarden_tests::Identity;
use gitwarden_tests::kubectl::kubectl_binary;
use gitwarden_tests::node::{NodeCluster, WEB_PORT};

#[tokio::test]
async fn kubectl_logs_shows_what_the_container_printed() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-logs").await.unwrap();
    node.run_toolbox(
        ns.name(),
        "talker",
        &[],
        &["sh", "-c", "echo hello from the node; exec sleep 3600"],
    )
    .unwrap();
    let logs = node.kubectl(Identity::Admin, &["logs", "-n", ns.name(), "talker"]);
    assert_eq!(logs.expect_success(), "hello from the node\n");
}

#[tokio::test]
async fn kubectl_exec_runs_a_command_in_the_container() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-exec").await.unwrap();
    node.run_toolbox(ns.name(), "target", &[], &["sleep", "3600"])
        .unwrap();
    let out = node.exec(
        ns.name(),
        "target",
        &["sh", "-c", "echo $((6 * 7)) > /tmp/x && cat /tmp/x"],
    );
    assert_eq!(out.expect_success(), "42\n");
    let hostname = node.exec(ns.name(), "target", &["hostname"]);
    assert_eq!(hostname.expect_success(), "target\n");
}

#[tokio::test]
async fn kubectl_port_forward_reaches_a_port_of_the_pod() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-portfwd").await.unwrap();
    node.run_web(ns.name(), "web", &[], "forwarded").unwrap();
    let mut forward = Command::new(kubectl_binary().unwrap())
        .arg("--kubeconfig")
        .arg(node.kubeconfig(Identity::Admin))
        .args([
            "port-forward",
            "-n",
            ns.name(),
            "pod/web",
            &format!(":{WEB_PORT}"),
        ])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // "Forwarding from 127.0.0.1:PORT -> 8080". The reader stays open until
    // kubectl is stopped: it reports each connection there, and a closed pipe
    // would end it.
    let mut output = BufReader::new(forward.stdout.take().unwrap());
    let mut first = String::new();
    output.read_line(&mut first).unwrap();
    let port = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {first:?}"))
        .to_string();
    let response = (|| -> std::io::Result<String> {
        let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{port}"))?;
        conn.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")?;
        let mut body = String::new();
        conn.read_to_string(&mut body)?;
        Ok(body)
    })();
    let _ = forward.kill();
    let _ = forward.wait();
    drop(output);
    let response = response.unwrap();
    assert!(
        response.starts_with("HTTP/1.") && response.ends_with("\r\n\r\nforwarded\n"),
        "{response}"
    );
}
