//! `rampart pki`: a small file-based CA for gateway and client certificates. The directory
//! layout is described in `docs/pki.md` and [`rampart_pki::ca`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rampart_pki::ca::{self, Algorithm, San};

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a root CA: DIR/ca.crt and DIR/private/ca.key.
    InitCa(InitCaArgs),
    /// Issue a gateway, client or cluster member certificate (serverAuth and clientAuth)
    /// signed by the CA (or by a new intermediate CA).
    Issue(IssueArgs),
    /// List the certificates issued in DIR.
    List(DirArgs),
    /// Revoke a certificate and rewrite DIR/crl.pem.
    Revoke(RevokeArgs),
    /// (Re)write DIR/crl.pem, the CRLs to give gateways as `crl`.
    Crl(CrlArgs),
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// The CA directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitCaArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Common name of the CA.
    #[arg(long, value_name = "CN")]
    pub name: String,
    /// Key algorithm: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096.
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_alg)]
    pub algorithm: Algorithm,
    /// Validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Certificate name: the subject's CN and the file names certs/NAME.crt, private/NAME.key.
    #[arg(long)]
    pub name: String,
    /// Subject alternative names, comma-separated: ip:ADDR, dns:NAME, email:USER@DOMAIN.
    #[arg(long, value_delimiter = ',', value_parser = parse_san)]
    pub san: Vec<San>,
    /// Key algorithm: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096.
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_alg)]
    pub algorithm: Algorithm,
    /// Sign through a new intermediate CA (intermediates/NAME-ca.crt), appended to the chain.
    #[arg(long)]
    pub intermediate: bool,
    /// Validity in days.
    #[arg(long, default_value_t = 1095)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Name of the certificate to revoke.
    #[arg(long)]
    pub name: String,
    /// Days until the CRL's next update.
    #[arg(long, default_value_t = 30)]
    pub crl_days: u32,
}

#[derive(Debug, Args)]
pub struct CrlArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Days until the CRL's next update.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    s.parse()
}

fn parse_san(s: &str) -> Result<San, String> {
    s.parse()
}

/// Runs one `rampart pki` command; errors go to standard error with exit code 1.
pub fn run(command: PkiCommand) -> ExitCode {
    let r = match command {
        PkiCommand::InitCa(a) => ca::init_ca(&a.dir.dir, &a.name, a.algorithm, a.days)
            .map(|p| println!("CA certificate: {}", p.display())),
        PkiCommand::Issue(a) => ca::issue(
            &a.dir.dir,
            &a.name,
            &a.san,
            a.algorithm,
            a.intermediate,
            a.days,
        )
        .map(|p| {
            println!("certificate: {}", p.display());
            println!(
                "private key: {}",
                ca::Layout::new(&a.dir.dir).key(&a.name).display()
            );
        }),
        PkiCommand::List(a) => ca::list(&a.dir).map(|all| {
            println!(
                "{:<20} {:<8} {:<34} {:<26} SANS",
                "NAME", "STATUS", "SERIAL", "NOT AFTER"
            );
            for c in all {
                println!(
                    "{:<20} {:<8} {:<34} {:<26} {}",
                    c.name,
                    if c.revoked { "revoked" } else { "valid" },
                    c.serial,
                    c.not_after,
                    c.sans.join(", ")
                );
            }
        }),
        PkiCommand::Revoke(a) => ca::revoke(&a.dir.dir, &a.name, a.crl_days)
            .map(|p| println!("revoked {}; CRL: {}", a.name, p.display())),
        PkiCommand::Crl(a) => {
            ca::write_crl(&a.dir.dir, a.days).map(|p| println!("CRL: {}", p.display()))
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart pki: {e}");
            ExitCode::from(crate::EXIT_FAILURE)
        }
    }
}
