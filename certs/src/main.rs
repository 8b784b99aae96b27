//! `gitwarden-certs`: writes a CA and a webhook serving certificate to files, for
//! running the webhook outside a cluster (the demo, tests) or seeding a Secret.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use gitwarden_certs::CertificateAuthority;

/// Generate a CA and a serving certificate signed by it.
#[derive(Debug, Parser)]
#[command(name = "gitwarden-certs", version, about)]
struct Cli {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long)]
    out: PathBuf,
    /// DNS names of the serving certificate (repeatable).
    #[arg(long = "dns", default_values_t = ["gitwarden-webhook.gitwarden-system.svc".to_string(), "localhost".to_string()])]
    dns: Vec<String>,
    /// IP addresses of the serving certificate (repeatable).
    #[arg(long = "ip", default_values_t = ["127.0.0.1".parse::<IpAddr>().expect("literal address")])]
    ips: Vec<IpAddr>,
    /// Validity of the serving certificate.
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    validity: Duration,
}

fn write(dir: &Path, name: &str, content: &str, private: bool) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    if private {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    // The CA outlives several serving certificates, so that rotation keeps the CA bundle.
    let ca =
        CertificateAuthority::generate("gitwarden-webhook-ca", cli.validity.saturating_mul(4))?;
    let names: Vec<&str> = cli.dns.iter().map(String::as_str).collect();
    let serving = ca.issue_serving_cert(&names, &cli.ips, cli.validity)?;
    write(&cli.out, "ca.crt", ca.cert_pem(), false)?;
    write(&cli.out, "ca.key", &ca.key_pem(), true)?;
    write(&cli.out, "tls.crt", &serving.cert_pem, false)?;
    write(&cli.out, "tls.key", &serving.key_pem, true)?;
    println!(
        "wrote ca.crt, ca.key, tls.crt, tls.key to {}",
        cli.out.display()
    );
    Ok(())
}
