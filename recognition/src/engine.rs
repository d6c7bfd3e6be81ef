//! The inference engine: the only module that names tract.
//!
//! Networks are parsed once, given concrete (or deliberately symbolic) input
//! shapes, optimised and turned into runnable plans. Everything outside this
//! module sees plain `f32` slices and shapes, so the rest of the pipeline does
//! not depend on the engine's API. ONNX protobuf reading and writing (for the
//! classifier file) lives here for the same reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::error::Error;

/// Sets how many threads the matrix products of every network use (1 = the
/// calling thread only, the default). Call once, before loading networks.
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    let executor = if threads <= 1 {
        Executor::SingleThread
    } else {
        Executor::multithread(threads)
    };
    set_default_executor(executor);
}

/// The number format a network computes in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Arith {
    /// The ONNX file's own `f32` throughout.
    #[default]
    F32,
    /// Weights and activations in `f16` (tract's `f32_to_f16` transform), except the
    /// nodes whose names contain one of `keep_f32`. Inputs and outputs stay `f32` for
    /// the caller: they are converted at the network's edges.
    F16 { keep_f32: Vec<String> },
}

/// One dimension of a network input: fixed, or left symbolic (resolved at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim {
    Fixed(usize),
    Symbolic(&'static str),
}

/// A dense `f32` tensor passed to or returned from a network.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensor32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor32 {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor32 {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor32 { shape, data }
    }
}

/// A parsed ONNX file, kept so several plans (one per input shape) can be
/// built from it without reading the file again.
pub(crate) struct OnnxFile {
    path: PathBuf,
    proto: pb::ModelProto,
    /// Where the file's external weight data lives (its directory), if any.
    weights_dir: Option<PathBuf>,
    /// A check of the weight file still running on another thread; plans are
    /// only handed out once it has passed.
    weights_check: std::sync::Mutex<Option<WeightsCheck>>,
}

/// A background check of a weight file (its sha256), joined before use.
pub(crate) type WeightsCheck = std::thread::JoinHandle<Result<(), Error>>;

impl std::fmt::Debug for OnnxFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxFile")
            .field("path", &self.path)
            .finish()
    }
}

impl OnnxFile {
    /// Parses ONNX bytes; `path` is only used in error messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<OnnxFile, Error> {
        let proto = pb::ModelProto::decode(bytes).map_err(|e| Error::ModelInvalid {
            path: path.to_owned(),
            reason: format!("not a valid ONNX protobuf ({e}); the file may be truncated"),
        })?;
        if proto.graph.is_none() {
            return Err(Error::ModelInvalid {
                path: path.to_owned(),
                reason: "the ONNX file holds no graph".into(),
            });
        }
        Ok(OnnxFile {
            path: path.to_owned(),
            proto,
            weights_dir: None,
            weights_check: std::sync::Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `metadata_props` key/value pairs stored in the file.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.proto
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect()
    }

    /// Builds an optimised plan with the given input shape for input 0.
    pub fn plan(&self, input: &[Dim]) -> Result<Network, Error> {
        let plan = self
            .model()
            .map_err(|e| self.invalid(e))
            .and_then(|model| Self::optimise(&self.path, model, input, &Arith::F32));
        Self::join_weights_check(self.take_weights_check())?;
        plan
    }

    /// Like [`OnnxFile::plan`], but frees the parsed file before optimising,
    /// which lowers the peak memory of loading a large network.
    pub fn into_plan(self, input: &[Dim]) -> Result<Network, Error> {
        self.into_plan_with(input, &Arith::F32)
    }

    /// [`OnnxFile::into_plan`] computing in the number format `arith`.
    pub fn into_plan_with(self, input: &[Dim], arith: &Arith) -> Result<Network, Error> {
        let check = self.take_weights_check();
        let model = self.model().map_err(|e| self.invalid(e));
        let path = self.path.clone();
        drop(self);
        let plan = model.and_then(|model| Self::optimise(&path, model, input, arith));
        // The weight check's verdict first: a damaged file explains a failure
        // better than the parser does.
        Self::join_weights_check(check)?;
        plan
    }

    /// Parses an ONNX file whose large tensors are kept in a separate file
    /// (ONNX external data) in `weights_dir`; `bytes` is the graph file.
    /// `check` verifies the weight file meanwhile, on its own thread: no plan
    /// is returned unless it passes, and its error is reported first.
    pub fn from_bytes_with_weights(
        path: &Path,
        bytes: &[u8],
        weights_dir: &Path,
        check: WeightsCheck,
    ) -> Result<OnnxFile, Error> {
        let mut file = match Self::from_bytes(path, bytes) {
            Ok(file) => file,
            Err(e) => {
                Self::join_weights_check(Some(check))?;
                return Err(e);
            }
        };
        file.weights_dir = Some(weights_dir.to_owned());
        file.weights_check = std::sync::Mutex::new(Some(check));
        Ok(file)
    }

    fn take_weights_check(&self) -> Option<WeightsCheck> {
        self.weights_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn join_weights_check(check: Option<WeightsCheck>) -> Result<(), Error> {
        match check.map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }

    /// The engine's model, weights read from the weight file if there is one.
    fn model(&self) -> TractResult<InferenceModel> {
        let dir = self
            .weights_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned());
        let parsed = tract_onnx::onnx().parse(&self.proto, dir.as_deref())?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(TractError::msg(format!(
                "the graph uses inputs it does not define: {:?}",
                parsed.unresolved_inputs
            )));
        }
        Ok(parsed.model)
    }

    fn invalid(&self, e: TractError) -> Error {
        Error::ModelInvalid {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        }
    }

    fn optimise(
        path: &Path,
        mut model: InferenceModel,
        input: &[Dim],
        arith: &Arith,
    ) -> Result<Network, Error> {
        let fail = |e: TractError| Error::ModelInvalid {
            path: path.to_owned(),
            reason: format!("cannot prepare the network for input {input:?}: {e:#}"),
        };
        let dims: TVec<TDim> = input
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_dim(),
                Dim::Symbolic(name) => model.symbols.sym(name).to_dim(),
            })
            .collect();
        model = model
            .with_input_fact(0, f32::fact(dims).into())
            .map_err(fail)?;
        let plan = match arith {
            Arith::F32 => model.into_optimized(),
            Arith::F16 { keep_f32 } => model.into_typed().and_then(|typed| to_f16(typed, keep_f32)),
        }
        .and_then(|m| m.into_runnable())
        .map_err(fail)?;
        Ok(Network {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            plan,
        })
    }
}

/// Decluttered `typed` with its `f32` nodes in `f16`, except those whose names contain
/// one of `keep_f32` (tract casts at the borders), then optimised.
fn to_f16(typed: TypedModel, keep_f32: &[String]) -> TractResult<TypedModel> {
    use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
    use tract_onnx::tract_core::transform::ModelTransform;
    let keep = keep_f32.to_vec();
    FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), move |node| {
        !keep.iter().any(|k| node.name.contains(k.as_str()))
    })
    .transform_into(typed.into_decluttered()?)?
    .into_optimized()
}

/// An optimised, runnable network (cloning shares the plan).
#[derive(Clone)]
pub(crate) struct Network {
    name: String,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("name", &self.name).finish()
    }
}

impl Network {
    /// `input` as a tensor of the plan's input type (`f16` for an `f16` plan).
    fn input_tensor(&self, input: &Tensor32) -> TractResult<Tensor> {
        let tensor = Tensor::from_shape(&input.shape, &input.data)?;
        let wanted = self.plan.model().input_fact(0)?.datum_type;
        if wanted == f32::datum_type() {
            Ok(tensor)
        } else {
            Ok(tensor.cast_to_dt(wanted)?.into_owned())
        }
    }

    /// Runs the network on one input; returns the outputs in graph order.
    pub fn run(&self, input: &Tensor32) -> Result<Vec<Tensor32>, Error> {
        let fail = |e: TractError| Error::Inference {
            network: self.name.clone(),
            reason: format!("{e:#}"),
        };
        let tensor = self.input_tensor(input).map_err(fail)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(fail)?;
        outputs
            .iter()
            .map(|t| {
                let t = t.cast_to::<f32>().map_err(fail)?;
                let view = t.to_plain_array_view::<f32>().map_err(fail)?;
                Ok(Tensor32::new(
                    view.shape().to_vec(),
                    view.iter().copied().collect(),
                ))
            })
            .collect()
    }
}

/// Time one operator of a network took, averaged over profiled runs.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    /// The node's name in the optimised graph (derived from the ONNX names).
    pub node: String,
    /// The engine's operator, e.g. `OptMatMul`, `OptMaxPool`.
    pub op: String,
    pub output_shape: Vec<usize>,
    pub ms: f64,
}

impl Network {
    /// Runs the network `runs` times (after two warm-up runs) timing every
    /// operator. Returns the median time of a whole run, and the operators,
    /// slowest first.
    pub fn profile(&self, input: &Tensor32, runs: usize) -> Result<(f64, Vec<OpTime>), Error> {
        use tract_onnx::tract_core::plan::{eval, SimpleState};
        let fail = |e: TractError| Error::Inference {
            network: self.name.clone(),
            reason: format!("{e:#}"),
        };
        let tensor: TValue = self.input_tensor(input).map_err(fail)?.into();
        let mut state = SimpleState::new(&self.plan).map_err(fail)?;
        for _ in 0..2 {
            state.run(tvec!(tensor.clone())).map_err(fail)?;
        }
        let mut per_node: HashMap<usize, f64> = HashMap::new();
        let mut totals = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let started = std::time::Instant::now();
            state
                .run_plan_with_eval(tvec!(tensor.clone()), |session, op_state, node, inputs| {
                    let t = std::time::Instant::now();
                    let out = eval(session, op_state, node, inputs);
                    *per_node.entry(node.id).or_default() += t.elapsed().as_secs_f64() * 1e3;
                    out
                })
                .map_err(fail)?;
            totals.push(started.elapsed().as_secs_f64() * 1e3);
        }
        totals.sort_by(f64::total_cmp);
        let model = self.plan.model();
        let mut ops: Vec<OpTime> = per_node
            .into_iter()
            .map(|(id, total)| {
                let node = model.node(id);
                OpTime {
                    node: node.name.clone(),
                    op: node.op().name().to_string(),
                    output_shape: node.outputs[0]
                        .fact
                        .shape
                        .as_concrete()
                        .map(|s| s.to_vec())
                        .unwrap_or_default(),
                    ms: total / totals.len() as f64,
                }
            })
            .collect();
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok((totals[totals.len() / 2], ops))
    }
}

/// A fully connected softmax head and a cosine-similarity layer, written as ONNX.
///
/// Inputs: `embedding [1, dim]` (L2-normalised). Outputs: `probabilities [1, k]`
/// (`softmax(x·W + b)`) and `similarities [1, k]` (`x·C`, C = unit centroids,
/// one per column).
pub(crate) struct HeadGraph<'a> {
    pub dim: usize,
    pub classes: usize,
    /// Row-major `[dim, classes]`.
    pub weights: &'a [f32],
    pub bias: &'a [f32],
    /// Row-major `[dim, classes]`.
    pub centroids: &'a [f32],
    pub metadata: &'a [(String, String)],
}

impl HeadGraph<'_> {
    /// Serialises the head as an ONNX model (opset 13).
    pub fn to_onnx_bytes(&self) -> Vec<u8> {
        let tensor = |name: &str, dims: Vec<i64>, data: &[f32]| pb::TensorProto {
            name: name.into(),
            dims,
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: data.to_vec(),
            ..Default::default()
        };
        let value = |name: &str, dims: [i64; 2]| pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: Some(pb::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| pb::tensor_shape_proto::Dimension {
                                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(*d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let node = |op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>| {
            pb::NodeProto {
                op_type: op.into(),
                name: output.into(),
                input: inputs.iter().map(|s| s.to_string()).collect(),
                output: vec![output.into()],
                attribute: attrs,
                ..Default::default()
            }
        };
        let (d, k) = (self.dim as i64, self.classes as i64);
        let axis = pb::AttributeProto {
            name: "axis".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        };
        let graph = pb::GraphProto {
            name: "facelock_head".into(),
            node: vec![
                node("Gemm", &["embedding", "W", "b"], "logits", vec![]),
                node("Softmax", &["logits"], "probabilities", vec![axis]),
                node("MatMul", &["embedding", "C"], "similarities", vec![]),
            ],
            initializer: vec![
                tensor("W", vec![d, k], self.weights),
                tensor("b", vec![k], self.bias),
                tensor("C", vec![d, k], self.centroids),
            ],
            input: vec![value("embedding", [1, d])],
            output: vec![
                value("probabilities", [1, k]),
                value("similarities", [1, k]),
            ],
            ..Default::default()
        };
        let model = pb::ModelProto {
            ir_version: 8,
            producer_name: "facelock-trainer".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(graph),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}
