//! `p2c pause` / `p2c resume`: turn a flow's EventBridge Scheduler schedules off and on, for every company or one.
//!
//! The stack (infra/template.yaml) puts every schedule in a group named after the stack, `P2C_STACK` (default
//! `p2c`). A flow's schedules target its function `<stack>-<flow>` and carry `{"flow": ..., "company": ...}` as
//! their Input; CloudFormation names them, so they are found by target and Input, never by name.
//!
//! A deploy that rewrites a schedule (another interval, say) gives it the template's state again, so a pause also
//! leaves a mark in the state table (`PAUSE#<flow>#<company>`) that scheduled runs honour: a paused flow stays
//! paused across any deploy until `p2c resume` turns the schedules on and removes the marks.

use anyhow::{Context, Result, bail};
use aws_sdk_scheduler::{Client, operation::get_schedule::GetScheduleOutput, types::ScheduleState};
use p2c_state::StateStore;
use p2c_sync::FlowName;
use serde::Serialize;
use serde_json::Value;

/// One schedule of the flow, and what pause/resume did to it.
#[derive(Debug, Serialize)]
pub struct Change {
    pub name: String,
    pub company: String,
    pub was: String,
    pub now: String,
}

/// Whether a schedule's target is the flow's function: `arn:<partition>:lambda:<region>:<account>:function:<name>`
/// (with or without a version or alias after the name).
pub fn targets_flow(target_arn: &str, stack: &str, flow: FlowName) -> bool {
    let mut parts = target_arn.split(':');
    parts.nth(2) == Some("lambda")
        && parts.nth(2) == Some("function")
        && parts.next() == Some(format!("{stack}-{}", flow.as_str()).as_str())
}

/// The company of a schedule whose Input runs `flow` (lower case, as the functions normalise it); `None` for an
/// Input that is not this flow's.
pub fn input_company(input: &str, flow: FlowName) -> Option<String> {
    let v: Value = serde_json::from_str(input).ok()?;
    if v.get("flow")?.as_str()? != flow.as_str() {
        return None;
    }
    Some(v.get("company")?.as_str()?.trim().to_ascii_lowercase())
}

/// `--company` as the functions normalise it: lower case, 1 to 4 letters or digits.
pub fn company_arg(company: &str) -> Result<String> {
    let c = company.trim().to_ascii_lowercase();
    if c.is_empty() || c.len() > 4 || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        bail!("--company {company:?}: a legal entity id is 1 to 4 letters or digits, like usmf");
    }
    Ok(c)
}

/// The flow's schedules in the stack's group (all companies, or one), with their full definitions.
async fn list(
    client: &Client,
    stack: &str,
    flow: FlowName,
    company: Option<&str>,
) -> Result<Vec<(String, GetScheduleOutput)>> {
    let mut names = Vec::new();
    let mut in_group = 0usize;
    let mut token = None;
    loop {
        let page = client
            .list_schedules()
            .group_name(stack)
            .set_next_token(token)
            .send()
            .await
            .with_context(|| format!("listing the schedules of group {stack}"))?;
        for s in page.schedules() {
            in_group += 1;
            let target = s.target().map(|t| t.arn()).unwrap_or_default();
            if let (Some(name), true) = (s.name(), targets_flow(target, stack, flow)) {
                names.push(name.to_string());
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if in_group == 0 {
        bail!(
            "no schedules in group {stack:?}: is P2C_STACK the name of the deployed stack (and AWS_REGION its region)?"
        );
    }
    let mut out = Vec::new();
    for name in names {
        let s = client
            .get_schedule()
            .group_name(stack)
            .name(&name)
            .send()
            .await
            .with_context(|| format!("reading schedule {stack}/{name}"))?;
        let Some(c) = s.target().and_then(|t| t.input()).and_then(|i| input_company(i, flow)) else {
            continue;
        };
        if company.is_none_or(|want| want == c) {
            out.push((c, s));
        }
    }
    Ok(out)
}

/// Writes the schedule back as it is, with `state`. UpdateSchedule replaces the whole definition, so every field
/// is carried over.
async fn set_state(client: &Client, s: &GetScheduleOutput, state: ScheduleState) -> Result<()> {
    let name = s.name().unwrap_or_default();
    client
        .update_schedule()
        .set_name(s.name().map(str::to_string))
        .set_group_name(s.group_name().map(str::to_string))
        .set_schedule_expression(s.schedule_expression().map(str::to_string))
        .set_schedule_expression_timezone(s.schedule_expression_timezone().map(str::to_string))
        .set_start_date(s.start_date().cloned())
        .set_end_date(s.end_date().cloned())
        .set_description(s.description().map(str::to_string))
        .set_kms_key_arn(s.kms_key_arn().map(str::to_string))
        .set_target(s.target().cloned())
        .set_flexible_time_window(s.flexible_time_window().cloned())
        .set_action_after_completion(s.action_after_completion().cloned())
        .state(state)
        .send()
        .await
        .with_context(|| format!("updating schedule {name}"))?;
    Ok(())
}

/// Sets every selected schedule of the flow to `enabled`, with the pause marks to match; fails when no schedule is
/// found. Pausing marks first and resuming unmarks last, so a failure half-way leaves the flow paused.
pub async fn pause_or_resume(
    client: &Client,
    state: &StateStore,
    stack: &str,
    flow: FlowName,
    company: Option<&str>,
    enabled: bool,
    by: &str,
) -> Result<Vec<Change>> {
    let company = company.map(company_arg).transpose()?;
    let found = list(client, stack, flow, company.as_deref()).await?;
    if found.is_empty() {
        match &company {
            Some(c) => bail!("no schedule of {flow} for company {c} in group {stack:?}"),
            None => bail!("no schedule of {flow} in group {stack:?}"),
        }
    }
    let want = if enabled {
        ScheduleState::Enabled
    } else {
        ScheduleState::Disabled
    };
    let mut changes = Vec::new();
    for (company, s) in found {
        let was = s.state().cloned().unwrap_or(ScheduleState::Enabled);
        if !enabled {
            state.put_pause_mark(flow.as_str(), &company, by).await?;
        }
        if was != want {
            set_state(client, &s, want.clone()).await?;
        }
        if enabled {
            state.delete_pause_mark(flow.as_str(), &company).await?;
        }
        changes.push(Change {
            name: s.name().unwrap_or_default().to_string(),
            company,
            was: was.as_str().to_string(),
            now: want.as_str().to_string(),
        });
    }
    changes.sort_by(|a, b| a.company.cmp(&b.company));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:p2c-prod-accounts-to-fno";

    #[test]
    fn a_schedule_belongs_to_the_flow_whose_function_it_targets() {
        assert!(targets_flow(ARN, "p2c-prod", FlowName::AccountsToFno));
        assert!(targets_flow(
            &format!("{ARN}:live"),
            "p2c-prod",
            FlowName::AccountsToFno
        ));
        // Another flow, another stack, another service.
        assert!(!targets_flow(ARN, "p2c-prod", FlowName::ContactsToFno));
        assert!(!targets_flow(ARN, "p2c", FlowName::AccountsToFno));
        assert!(!targets_flow(
            "arn:aws:lambda:eu-west-1:123456789012:function:p2c-prod-accounts-to-fno-old",
            "p2c-prod",
            FlowName::AccountsToFno
        ));
        assert!(!targets_flow(
            "arn:aws:sqs:eu-west-1:123456789012:p2c-prod-accounts-to-fno",
            "p2c-prod",
            FlowName::AccountsToFno
        ));
        assert!(!targets_flow("", "p2c-prod", FlowName::AccountsToFno));
    }

    #[test]
    fn the_company_comes_from_the_input_of_this_flow() {
        let input = r#"{"flow":"accounts-to-fno","company":"USMF"}"#;
        assert_eq!(input_company(input, FlowName::AccountsToFno).as_deref(), Some("usmf"));
        assert_eq!(input_company(input, FlowName::ContactsToFno), None);
        assert_eq!(
            input_company(r#"{"flow":"accounts-to-fno"}"#, FlowName::AccountsToFno),
            None
        );
        assert_eq!(input_company("not json", FlowName::AccountsToFno), None);
    }

    #[test]
    fn company_arguments_are_normalised_as_the_functions_do() {
        assert_eq!(company_arg(" USMF ").unwrap(), "usmf");
        for bad in ["", "usmfx", "us-1"] {
            assert!(company_arg(bad).is_err(), "{bad:?}");
        }
    }
}
