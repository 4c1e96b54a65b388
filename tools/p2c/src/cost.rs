//! What a measured run costs on AWS: a small price table (us-east-1, on demand) and the function's memory and
//! architecture as `infra/template.yaml` deploys them by default.
//!
//! Prices read on 2026-12-04 (USD, us-east-1, on demand, before free tiers), from:
//! - Lambda: <https://aws.amazon.com/lambda/pricing/> — $0.0000133334 per GB-second on arm64,
//!   $0.0000166667 on x86_64, $0.20 per million requests.
//! - DynamoDB on demand: <https://aws.amazon.com/dynamodb/pricing/on-demand/> — $0.125 per million read request
//!   units, $0.625 per million write request units (the rates since AWS halved on-demand throughput prices on
//!   2024-11-01, <https://aws.amazon.com/about-aws/whats-new/2024/11/amazon-dynamodb-reduces-prices-on-demand-throughput-global-tables/>).
//! - SQS standard queues: <https://aws.amazon.com/sqs/pricing/> — $0.40 per million requests (64 KB chunks).
//! - EventBridge Scheduler: <https://aws.amazon.com/eventbridge/pricing/> — $1.00 per million scheduled
//!   invocations.

use serde::Serialize;

/// USD per unit.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Prices {
    pub read_on: &'static str,
    pub lambda_gb_s_arm64: f64,
    pub lambda_gb_s_x86_64: f64,
    pub lambda_request: f64,
    pub dynamodb_rru: f64,
    pub dynamodb_wru: f64,
    pub sqs_request: f64,
    pub scheduler_invocation: f64,
}

pub const US_EAST_1: Prices = Prices {
    read_on: "2026-12-04",
    lambda_gb_s_arm64: 0.000_013_333_4,
    lambda_gb_s_x86_64: 0.000_016_666_7,
    lambda_request: 0.20 / 1e6,
    dynamodb_rru: 0.125 / 1e6,
    dynamodb_wru: 0.625 / 1e6,
    sqs_request: 0.40 / 1e6,
    scheduler_invocation: 1.00 / 1e6,
};

/// The deployed function: memory (MB) and architecture, the template's defaults.
#[derive(Clone, Debug, Serialize)]
pub struct Function {
    pub memory_mb: u64,
    pub architecture: String,
}

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// The `Default:` of a template parameter.
fn parameter_default(name: &str) -> Option<String> {
    let start = TEMPLATE.find(&format!("\n  {name}:\n"))?;
    TEMPLATE[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .find_map(|l| l.trim().strip_prefix("Default:"))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
}

impl Function {
    pub fn default_deployment() -> Function {
        Function {
            memory_mb: parameter_default("MemorySize")
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            architecture: parameter_default("Architecture").unwrap_or_else(|| "arm64".into()),
        }
    }

    fn gb_s_price(&self, p: &Prices) -> f64 {
        if self.architecture == "x86_64" {
            p.lambda_gb_s_x86_64
        } else {
            p.lambda_gb_s_arm64
        }
    }
}

/// What a measured run used on AWS.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    /// Lambda invocations and their billed seconds (the runs' durations).
    pub invocations: f64,
    pub seconds: f64,
    pub dynamodb_rru: f64,
    pub dynamodb_wru: f64,
    pub sqs_requests: f64,
    pub scheduler_invocations: f64,
}

impl Usage {
    pub fn scaled(&self, f: f64) -> Usage {
        Usage {
            invocations: self.invocations * f,
            seconds: self.seconds * f,
            dynamodb_rru: self.dynamodb_rru * f,
            dynamodb_wru: self.dynamodb_wru * f,
            sqs_requests: self.sqs_requests * f,
            scheduler_invocations: self.scheduler_invocations * f,
        }
    }

    pub fn add(&mut self, o: &Usage) {
        *self = Usage {
            invocations: self.invocations + o.invocations,
            seconds: self.seconds + o.seconds,
            dynamodb_rru: self.dynamodb_rru + o.dynamodb_rru,
            dynamodb_wru: self.dynamodb_wru + o.dynamodb_wru,
            sqs_requests: self.sqs_requests + o.sqs_requests,
            scheduler_invocations: self.scheduler_invocations + o.scheduler_invocations,
        };
    }
}

/// USD by service.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Cost {
    pub total: f64,
    pub lambda: f64,
    pub lambda_gb_s: f64,
    pub dynamodb: f64,
    pub sqs: f64,
    pub scheduler: f64,
}

pub fn cost(u: &Usage, f: &Function, p: &Prices) -> Cost {
    let gb_s = u.seconds * f.memory_mb as f64 / 1024.0;
    let lambda = gb_s * f.gb_s_price(p) + u.invocations * p.lambda_request;
    let dynamodb = u.dynamodb_rru * p.dynamodb_rru + u.dynamodb_wru * p.dynamodb_wru;
    let sqs = u.sqs_requests * p.sqs_request;
    let scheduler = u.scheduler_invocations * p.scheduler_invocation;
    Cost {
        total: lambda + dynamodb + sqs + scheduler,
        lambda,
        lambda_gb_s: gb_s,
        dynamodb,
        sqs,
        scheduler,
    }
}

/// One line: the cost and what it is made of.
pub fn describe(c: &Cost, u: &Usage) -> String {
    format!(
        "${:.4} (Lambda ${:.4}: {:.1} GB-s, {:.0} invocations; DynamoDB ${:.4}: {:.0} RRU, {:.0} WRU; SQS ${:.4}: {:.0} requests; Scheduler ${:.4}: {:.0} invocations)",
        c.total,
        c.lambda,
        c.lambda_gb_s,
        u.invocations,
        c.dynamodb,
        u.dynamodb_rru,
        u.dynamodb_wru,
        c.sqs,
        u.sqs_requests,
        c.scheduler,
        u.scheduler_invocations
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_defaults_are_read() {
        let f = Function::default_deployment();
        assert_eq!(f.memory_mb, 256);
        assert_eq!(f.architecture, "arm64");
    }

    #[test]
    fn a_million_writes_cost_their_price() {
        let u = Usage {
            dynamodb_wru: 1e6,
            seconds: 4096.0,
            ..Default::default()
        };
        let c = cost(&u, &Function::default_deployment(), &US_EAST_1);
        assert!((c.dynamodb - 0.625).abs() < 1e-9);
        // 4,096 s at 256 MB = 1,024 GB-s on arm64.
        assert!((c.lambda - 1024.0 * 0.000_013_333_4).abs() < 1e-9);
    }
}
