//! The local cluster's PKI: one CA, the API server's serving certificate, an admin client
//! certificate (group `system:masters`), one client certificate per extra named user (also in
//! `system:masters`, so its requests can be told apart by user name, e.g. in the audit log) and
//! the service-account signing key pair, all generated in-process and written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// Paths of the PEM files the control-plane processes read.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// The client certificate and key of an extra user.
#[derive(Debug, Clone)]
pub struct UserFiles {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The PEM contents, kept in memory for building clients.
#[derive(Debug, Clone)]
pub struct Pki {
    pub files: PkiFiles,
    pub ca_cert_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub users: Vec<UserFiles>,
}

fn pki_error(what: &str, err: rcgen::Error) -> Error {
    Error::Pki(format!("{what}: {err}"))
}

fn named(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        name.push(DnType::OrganizationName, org);
    }
    name
}

/// Generates the PKI into `dir` (created if needed). `service_ip` is the first address of the
/// service CIDR, which in-cluster clients use to reach the API server; `users` get a client
/// certificate each (common name = the user name, group `system:masters`).
pub fn generate(dir: &Path, service_ip: &str, users: &[String]) -> Result<Pki, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;

    let ca_key = KeyPair::generate().map_err(|e| pki_error("CA key", e))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error("CA", e))?;
    ca_params.distinguished_name = named("weft-local-cluster-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| pki_error("CA certificate", e))?;
    let ca = Issuer::new(ca_params, &ca_key);

    let serving_key = KeyPair::generate().map_err(|e| pki_error("serving key", e))?;
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        service_ip.to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])
    .map_err(|e| pki_error("serving certificate names", e))?;
    serving.distinguished_name = named("kube-apiserver", None);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &ca)
        .map_err(|e| pki_error("serving certificate", e))?;

    let admin_key = KeyPair::generate().map_err(|e| pki_error("admin key", e))?;
    let mut admin =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error("admin", e))?;
    admin.distinguished_name = named("weft-admin", Some("system:masters"));
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &ca)
        .map_err(|e| pki_error("admin certificate", e))?;

    let mut user_files = Vec::new();
    for user in users {
        let key = KeyPair::generate().map_err(|e| pki_error(user, e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error(user, e))?;
        params.distinguished_name = named(user, Some("system:masters"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &ca)
            .map_err(|e| pki_error(user, e))?;
        let files = UserFiles {
            name: user.clone(),
            cert: dir.join(format!("user-{user}.crt")),
            key: dir.join(format!("user-{user}.key")),
        };
        for (path, contents) in [(&files.cert, cert.pem()), (&files.key, key.serialize_pem())] {
            std::fs::write(path, contents).map_err(|e| Error::io(path, e))?;
        }
        user_files.push(files);
    }

    let service_account = KeyPair::generate().map_err(|e| pki_error("service-account key", e))?;

    let files = PkiFiles {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        service_account_key: dir.join("sa.key"),
        service_account_pub: dir.join("sa.pub"),
    };
    let pki = Pki {
        ca_cert_pem: ca_cert.pem(),
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
        users: user_files,
        files,
    };
    let writes = [
        (&pki.files.ca_cert, pki.ca_cert_pem.clone()),
        (&pki.files.ca_key, ca_key.serialize_pem()),
        (&pki.files.serving_cert, serving_cert.pem()),
        (&pki.files.serving_key, serving_key.serialize_pem()),
        (&pki.files.admin_cert, pki.admin_cert_pem.clone()),
        (&pki.files.admin_key, pki.admin_key_pem.clone()),
        (
            &pki.files.service_account_key,
            service_account.serialize_pem(),
        ),
        (
            &pki.files.service_account_pub,
            service_account.public_key_pem(),
        ),
    ];
    for (path, contents) in writes {
        std::fs::write(path, contents).map_err(|e| Error::io(path, e))?;
    }
    Ok(pki)
}
