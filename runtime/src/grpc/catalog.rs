//! What the bridge serves at a given moment: the interfaces of the served runtime, each as a
//! `.proto` compiled (with protox, which also proves the text compiles) into descriptors, the
//! routes `/package.Service/Method` of their methods, and the reflection services built from the
//! same descriptors. Rebuilt when the set of interfaces changes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use tonic::body::Body;
use tonic::codegen::Service;

use crate::BoxFuture;
use crate::proto::{self, ProtoFile};
use crate::runtime::RuntimeInner;
use crate::schema::InterfaceSchema;
use crate::types::InterfaceTypes;

/// One HTTP-level service (reflection), callable with a request.
pub(crate) type HttpService =
    Box<dyn Fn(http::Request<Body>) -> BoxFuture<'static, http::Response<Body>> + Send + Sync>;

/// Boxes a tonic-generated server.
pub(crate) fn boxed<S>(svc: S) -> HttpService
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    Box::new(move |req| {
        let mut s = svc.clone();
        Box::pin(async move {
            match s.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        })
    })
}

/// One interface as served.
pub(crate) struct Served {
    pub(crate) schema: &'static InterfaceSchema,
    pub(crate) types: InterfaceTypes,
    pub(crate) file: ProtoFile,
    pub(crate) pool: DescriptorPool,
}

/// One method as served.
pub(crate) struct Route {
    pub(crate) served: Arc<Served>,
    /// Index in `served.types.methods`.
    pub(crate) method: usize,
    pub(crate) request: MessageDescriptor,
    pub(crate) reply: MessageDescriptor,
    pub(crate) app_error: MessageDescriptor,
    pub(crate) oneway: bool,
    /// Whether the call can run in this task, without the in-memory link: a two-way method
    /// whose values hold no references (only a reference needs a connection to marshal).
    pub(crate) in_process: bool,
}

/// Everything served, as of one build.
pub(crate) struct Catalog {
    /// The interfaces it was built from (to notice a change).
    pub(crate) interfaces: Vec<String>,
    pub(crate) routes: HashMap<String, Arc<Route>>,
    /// Per interface, its gRPC service's full name.
    pub(crate) services: Vec<(String, String)>,
    pub(crate) reflection_v1: HttpService,
    pub(crate) reflection_v1alpha: HttpService,
}

/// The interfaces `rt` serves now.
pub(crate) fn served_names(rt: &Arc<RuntimeInner>) -> Vec<String> {
    crate::types::served(rt)
        .into_iter()
        .map(|(s, _)| s.name.to_string())
        .collect()
}

/// Compiles one generated file into descriptors.
fn compile(file: &ProtoFile) -> Result<(DescriptorPool, prost_types::FileDescriptorProto), String> {
    struct One(ProtoFile);
    impl protox::file::FileResolver for One {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            if name == self.0.path {
                protox::file::File::from_source(name, &self.0.text)
            } else {
                Err(protox::Error::file_not_found(name))
            }
        }
    }
    let mut compiler = protox::Compiler::with_file_resolver(One(file.clone()));
    compiler.include_imports(true);
    compiler.open_file(&file.path).map_err(|e| e.to_string())?;
    let set = compiler.file_descriptor_set();
    let proto = set
        .file
        .iter()
        .find(|f| f.name() == file.path)
        .cloned()
        .ok_or_else(|| format!("{} compiled to nothing", file.path))?;
    let pool = DescriptorPool::from_file_descriptor_set(set).map_err(|e| e.to_string())?;
    Ok((pool, proto))
}

/// Builds the catalog of what `rt` serves.
pub(crate) fn build(rt: &Arc<RuntimeInner>) -> Catalog {
    let mut routes = HashMap::new();
    let mut services = Vec::new();
    let mut files = Vec::new();
    let mut interfaces = Vec::new();
    for (schema, trace) in crate::types::served(rt) {
        interfaces.push(schema.name.to_string());
        let traced = crate::types::of(rt, schema, trace);
        let types = match &*traced {
            Ok(t) => t.clone(),
            Err(e) => {
                tracing::warn!(interface = %schema.name, error = %e, "not served over gRPC");
                continue;
            }
        };
        let built = proto::render(&types)
            .map_err(|e| e.reason)
            .and_then(|file| compile(&file).map(|(pool, fdp)| (file, pool, fdp)));
        let (file, pool, fdp) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(interface = %schema.name, error = %e, "not served over gRPC");
                continue;
            }
        };
        let service = file.service_name();
        let served = Arc::new(Served {
            schema,
            types,
            file,
            pool,
        });
        for (i, m) in served.types.methods.iter().enumerate() {
            if m.error.is_some() {
                continue;
            }
            let rpc = proto::rpc_name(&m.name);
            let msg = |name: String| {
                served
                    .pool
                    .get_message_by_name(&format!("{}.{name}", served.file.package))
            };
            let (Some(request), Some(reply), Some(app_error)) = (
                msg(proto::request_name(&rpc)),
                msg(proto::reply_name(&rpc)),
                msg(proto::error_name(&rpc)),
            ) else {
                continue;
            };
            let oneway = schema.method(&m.name).is_some_and(|s| s.oneway);
            let layout = crate::proto::Layout::new(&served.types);
            let in_process = !oneway
                && !layout.has_remote(&m.ok)
                && !layout.has_remote(&m.err)
                && !m.args.iter().any(|a| layout.has_remote(&a.shape));
            routes.insert(
                format!("/{service}/{rpc}"),
                Arc::new(Route {
                    served: served.clone(),
                    method: i,
                    request,
                    reply,
                    app_error,
                    oneway,
                    in_process,
                }),
            );
        }
        services.push((schema.name.to_string(), service));
        files.push(fdp);
    }
    let set = prost_types::FileDescriptorSet { file: files };
    let reflection = |set: prost_types::FileDescriptorSet| {
        tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .include_reflection_service(true)
    };
    // Both versions: grpcurl and most tools speak v1, Python's grpcio-reflection v1alpha.
    let v1 = reflection(set.clone()).build_v1();
    let v1alpha = reflection(set).build_v1alpha();
    let (reflection_v1, reflection_v1alpha) = match (v1, v1alpha) {
        (Ok(a), Ok(b)) => (boxed(a), boxed(b)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "gRPC reflection unavailable");
            (unavailable(), unavailable())
        }
    };
    Catalog {
        interfaces,
        routes,
        services,
        reflection_v1,
        reflection_v1alpha,
    }
}

fn unavailable() -> HttpService {
    Box::new(|_| {
        Box::pin(async {
            tonic::Status::unavailable("reflection is unavailable (see the server's log)")
                .into_http()
        })
    })
}
