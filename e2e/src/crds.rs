//! Installing CustomResourceDefinitions into a local cluster and waiting until they are served.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions::is_crd_established};
use kube::{Client, ResourceExt};

use crate::Error;

const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// Server-side applies each CRD as `field_manager`, then waits until every one is Established.
pub async fn install_crds(
    client: &Client,
    crds: impl IntoIterator<Item = CustomResourceDefinition>,
    field_manager: &str,
) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(field_manager).force();
    let mut names = Vec::new();
    for crd in crds {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|e| Error::Api(format!("apply CRD {name}: {e}")))?;
        names.push(name);
    }
    for name in names {
        let established = await_condition(api.clone(), &name, is_crd_established());
        match tokio::time::timeout(ESTABLISHED_TIMEOUT, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Error::Api(format!("watch CRD {name}: {e}"))),
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("CRD {name} to be Established"),
                    seconds: ESTABLISHED_TIMEOUT.as_secs(),
                });
            }
        }
    }
    Ok(())
}
