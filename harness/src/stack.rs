//! The whole local stack in one call: moto (SQS, and DynamoDB for the watermark
//! table when the function has one), the Connect emulator
//! (in-process), a Runtime API and the function process, with one dead-letter
//! queue per failure class and source queues (standard and FIFO) whose redrive
//! policies are the last resort.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use connect_emulator::{Emulator, EmulatorHandle};
use serde_json::Value;

use crate::dynamodb::{Dynamo, WATERMARK_TABLE};
use crate::esm::EventSourceMapping;
use crate::function::{Function, FunctionConfig};
use crate::moto::Moto;
use crate::runtime_api::{Invocation, RuntimeApi};
use crate::sqs::{Message, Queue, QueueSpec, Sqs};
use crate::{ERROR_CLASSES, HarnessError, kebab};

/// Name of the standard source queue.
pub const SOURCE_QUEUE: &str = "identity-changes";
/// Name of the FIFO source queue.
pub const FIFO_SOURCE_QUEUE: &str = "identity-changes.fifo";

/// How to build a [`Stack`].
#[derive(Clone, Debug)]
pub struct StackConfig {
    function: FunctionConfig,
    seed: Option<Value>,
    visibility_timeout: u32,
    source_max_receive_count: u32,
    function_timeout: Duration,
    emulator_log: bool,
    create_watermark_table: bool,
}

impl StackConfig {
    /// A stack around the function binary at `binary`. Defaults: visibility timeout
    /// 2 s, source redrive after 6 receives, function timeout 30 s,
    /// `MAX_RECEIVE_COUNT=3`, one `DLQ_URL_*` per class.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            function: FunctionConfig::new(binary).env("MAX_RECEIVE_COUNT", "3"),
            seed: None,
            visibility_timeout: 2,
            source_max_receive_count: 6,
            function_timeout: Duration::from_secs(30),
            emulator_log: std::env::var_os("HARNESS_EMULATOR_LOG").is_some(),
            create_watermark_table: true,
        }
    }

    /// Turns the staleness guard on: `WATERMARK_TABLE` names a table the stack creates
    /// in moto (partition key `pk`, String).
    #[must_use]
    pub fn watermarks(self) -> Self {
        self.env("WATERMARK_TABLE", WATERMARK_TABLE)
    }

    /// Leaves the table `WATERMARK_TABLE` names uncreated (it is created by default).
    #[must_use]
    pub fn without_watermark_table(mut self) -> Self {
        self.create_watermark_table = false;
        self
    }

    /// Sets a function variable; `{sqs}` in the value stands for the moto endpoint
    /// (e.g. `{sqs}/123456789012/no-such-queue`).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.function = self.function.env(key, value);
        self
    }

    /// Leaves a function variable out (a `DLQ_URL_*` included).
    #[must_use]
    pub fn without(mut self, key: impl Into<String>) -> Self {
        self.function = self.function.without(key);
        self
    }

    /// Instances and users to load into the emulator (its seed JSON format).
    #[must_use]
    pub fn seed(mut self, seed: Value) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The source queues' visibility timeout, seconds.
    #[must_use]
    pub fn visibility_timeout(mut self, seconds: u32) -> Self {
        self.visibility_timeout = seconds;
        self
    }

    /// The source queues' redrive `maxReceiveCount`.
    #[must_use]
    pub fn source_max_receive_count(mut self, count: u32) -> Self {
        self.source_max_receive_count = count;
        self
    }

    /// The function timeout (each invocation's deadline).
    #[must_use]
    pub fn function_timeout(mut self, timeout: Duration) -> Self {
        self.function_timeout = timeout;
        self
    }

    /// Copies the function's output to stderr as it comes.
    #[must_use]
    pub fn echo_logs(mut self, echo: bool) -> Self {
        self.function = self.function.echo_logs(echo);
        self
    }

    /// Logs each Connect call the emulator answers.
    #[must_use]
    pub fn emulator_log(mut self, on: bool) -> Self {
        self.emulator_log = on;
        self
    }

    /// Starts everything.
    ///
    /// # Errors
    /// When moto, the emulator or the function cannot be started, or the seed is refused.
    pub async fn start(self) -> Result<Stack, HarnessError> {
        let moto = Moto::start().await?;
        let sqs = moto.sqs().await;
        let emulator = Emulator::builder()
            .log_requests(self.emulator_log)
            .start("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::Emulator(e.to_string()))?;
        if let Some(seed) = &self.seed {
            emulator
                .seed_json(seed.clone())
                .map_err(|e| HarnessError::Emulator(format!("{e:?}")))?;
        }

        let mut dlqs = BTreeMap::new();
        let mut function = self.function.clone();
        let endpoint = moto.endpoint();
        let templated: Vec<(String, String)> = function
            .vars()
            .iter()
            .filter(|(_, v)| v.contains("{sqs}"))
            .map(|(k, v)| (k.clone(), v.replace("{sqs}", &endpoint)))
            .collect();
        function = function.envs(templated);
        for (class, var) in ERROR_CLASSES {
            let queue = sqs
                .create_queue(&QueueSpec::new(format!("dlq-{}", kebab(class))))
                .await?;
            if !function_removes(&self.function, var) && !self.function.vars().contains_key(var) {
                function = function.env(var, &queue.url);
            }
            dlqs.insert(class.to_owned(), queue);
        }
        let source_dlq = sqs
            .create_queue(&QueueSpec::new(format!("{SOURCE_QUEUE}-dlq")))
            .await?;
        let source = sqs
            .create_queue(
                &QueueSpec::new(SOURCE_QUEUE)
                    .visibility_timeout(self.visibility_timeout)
                    .redrive(&source_dlq.arn, self.source_max_receive_count),
            )
            .await?;
        let fifo_source_dlq = sqs
            .create_queue(&QueueSpec::new("identity-changes-dlq.fifo"))
            .await?;
        let fifo_source = sqs
            .create_queue(
                &QueueSpec::new(FIFO_SOURCE_QUEUE)
                    .visibility_timeout(self.visibility_timeout)
                    .redrive(&fifo_source_dlq.arn, self.source_max_receive_count),
            )
            .await?;

        // moto serves DynamoDB on the same port as SQS.
        if !function.vars().contains_key("AWS_ENDPOINT_URL_DYNAMODB") {
            function = function.env("AWS_ENDPOINT_URL_DYNAMODB", &endpoint);
        }
        let dynamo = moto.dynamo().await;
        let watermark_table = function.vars().get("WATERMARK_TABLE").cloned();
        if let Some(table) = watermark_table
            .as_deref()
            .filter(|_| self.create_watermark_table)
        {
            dynamo.create_watermark_table(table).await?;
        }

        let runtime = RuntimeApi::start().await?;
        let connect = emulator.endpoint_url();
        let sqs_url = moto.endpoint();
        let process = Function::start(&function, &runtime, Some(&connect), Some(&sqs_url))?;
        Ok(Stack {
            moto,
            sqs,
            dynamo,
            watermark_table,
            emulator,
            runtime,
            function: process,
            function_config: function,
            dlqs,
            source,
            source_dlq,
            fifo_source,
            fifo_source_dlq,
            function_timeout: self.function_timeout,
        })
    }
}

/// A second container of the function (see [`Stack::start_replica`]).
pub struct Replica {
    /// Its Runtime API.
    pub runtime: RuntimeApi,
    /// Its process.
    pub function: Function,
}

fn function_removes(config: &FunctionConfig, var: &str) -> bool {
    // `without` removes the key from the vars; a removed DLQ variable must stay unset.
    config.removed().iter().any(|k| k == var)
}

/// A running stack. Everything stops when it is dropped.
pub struct Stack {
    /// The moto server.
    pub moto: Moto,
    /// An SQS client for it.
    pub sqs: Sqs,
    /// A DynamoDB client for it.
    pub dynamo: Dynamo,
    /// The table `WATERMARK_TABLE` names, when the function has one.
    pub watermark_table: Option<String>,
    /// The Connect emulator.
    pub emulator: EmulatorHandle,
    /// The Runtime API the function polls.
    pub runtime: RuntimeApi,
    /// The function process.
    pub function: Function,
    /// The function's configuration (as started).
    pub function_config: FunctionConfig,
    /// Dead-letter queue per failure class.
    pub dlqs: BTreeMap<String, Queue>,
    /// The standard source queue.
    pub source: Queue,
    /// Its redrive target.
    pub source_dlq: Queue,
    /// The FIFO source queue.
    pub fifo_source: Queue,
    /// Its redrive target.
    pub fifo_source_dlq: Queue,
    /// The function timeout.
    pub function_timeout: Duration,
}

impl Stack {
    /// The dead-letter queue of `class`.
    ///
    /// # Panics
    /// For a name that is not a failure class.
    #[must_use]
    pub fn dlq(&self, class: &str) -> &Queue {
        self.dlqs
            .get(class)
            .unwrap_or_else(|| panic!("no dead-letter queue for class {class}"))
    }

    /// Invokes the function with a JSON event and the stack's function timeout.
    ///
    /// # Errors
    /// As [`RuntimeApi::invoke`].
    pub async fn invoke(&self, event: &Value) -> Result<Invocation, HarnessError> {
        self.runtime.invoke_json(event, self.function_timeout).await
    }

    /// Invokes the function with raw bytes.
    ///
    /// # Errors
    /// As [`RuntimeApi::invoke`].
    pub async fn invoke_raw(&self, payload: &[u8]) -> Result<Invocation, HarnessError> {
        self.runtime
            .invoke(payload.to_vec(), self.function_timeout)
            .await
    }

    /// The event source mapping from the standard source queue.
    #[must_use]
    pub fn mapping(&self) -> EventSourceMapping {
        EventSourceMapping::new(self.sqs.clone(), self.source.clone(), self.runtime.clone())
            .function_timeout(self.function_timeout)
    }

    /// The event source mapping from the FIFO source queue.
    #[must_use]
    pub fn fifo_mapping(&self) -> EventSourceMapping {
        EventSourceMapping::new(
            self.sqs.clone(),
            self.fifo_source.clone(),
            self.runtime.clone(),
        )
        .function_timeout(self.function_timeout)
    }

    /// Everything in every class's dead-letter queue (received, not deleted), by class.
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn dead_letters(&self) -> Result<BTreeMap<String, Vec<Message>>, HarnessError> {
        let mut out = BTreeMap::new();
        for (class, queue) in &self.dlqs {
            out.insert(class.clone(), self.sqs.receive_all(&queue.url).await?);
        }
        Ok(out)
    }

    /// Starts a second container of the function: its own Runtime API and process,
    /// with the stack's configuration except `AWS_ACCESS_KEY_ID`, set to `access_key`
    /// so that the emulator's journal tells the two containers' calls apart
    /// (`JournalEntry::caller`).
    ///
    /// # Errors
    /// When the Runtime API or the binary cannot be started.
    pub async fn start_replica(&self, access_key: &str) -> Result<Replica, HarnessError> {
        let runtime = RuntimeApi::start().await?;
        let config = self
            .function_config
            .clone()
            .env("AWS_ACCESS_KEY_ID", access_key);
        let connect = self.emulator.endpoint_url();
        let sqs = self.moto.endpoint();
        let function = Function::start(&config, &runtime, Some(&connect), Some(&sqs))?;
        Ok(Replica { runtime, function })
    }

    /// The event source mapping from the standard source queue to the function behind
    /// `runtime` (a replica's), with the stack's function timeout.
    #[must_use]
    pub fn mapping_to(&self, runtime: &RuntimeApi) -> EventSourceMapping {
        EventSourceMapping::new(self.sqs.clone(), self.source.clone(), runtime.clone())
            .function_timeout(self.function_timeout)
    }

    /// Starts the function process anew with `config` on the same Runtime API.
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub async fn restart_function(&mut self, config: FunctionConfig) -> Result<(), HarnessError> {
        self.function.kill();
        // Wait for the old process to end so its exit is not taken for the new one's.
        self.function.wait_exit(Duration::from_secs(10)).await;
        let connect = self.emulator.endpoint_url();
        let sqs = self.moto.endpoint();
        self.function = Function::start(&config, &self.runtime, Some(&connect), Some(&sqs))?;
        self.function_config = config;
        Ok(())
    }
}
