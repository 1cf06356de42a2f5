"""template.yaml keeps the deployment least-privileged, refusing by default, and loses nothing."""

import checks


# IAM ---------------------------------------------------------------------------------


def test_no_statement_grants_a_wildcard_connect_or_sqs_action(template):
    checks.check_no_wildcard_action_for_connect_or_sqs(template)


def test_no_connect_or_sqs_statement_applies_to_every_resource(template):
    checks.check_no_connect_or_sqs_statement_on_every_resource(template)


def test_after_the_sam_transform_no_statement_grants_a_wildcard_or_every_resource(transformed):
    checks.check_no_wildcard_action_for_connect_or_sqs(transformed)
    checks.check_no_connect_or_sqs_statement_on_every_resource(transformed)


def test_sam_attaches_no_managed_policy_with_unscoped_queue_or_log_access(transformed):
    checks.check_deployed_role_has_no_managed_policy(transformed)


def test_function_may_call_exactly_the_five_connect_actions_it_uses(template):
    checks.check_connect_actions_are_exactly_the_five_used(template)


def test_connect_actions_are_scoped_to_the_configured_instance_and_its_agents(template):
    checks.check_connect_actions_only_on_the_configured_instance(template)


def test_function_may_send_only_to_the_per_class_dead_letter_queues(template):
    checks.check_send_message_only_on_dead_letter_queues_and_the_source_queue(template)


def test_function_may_poll_only_its_source_queue(template):
    checks.check_polling_only_on_the_source_queue(template)


def test_function_role_allows_nothing_the_function_does_not_use(template):
    checks.check_role_statements_only_allow_what_the_function_uses(template)


# Queues --------------------------------------------------------------------------------


def test_every_queue_is_encrypted_at_rest(template):
    checks.check_every_queue_is_encrypted(template)


def test_dead_letter_queues_keep_messages_fourteen_days(template):
    checks.check_dead_letter_queues_keep_messages_fourteen_days(template)


def test_queues_and_their_messages_survive_stack_deletion(template):
    checks.check_queues_outlive_the_stack(template)


def test_source_queue_hides_a_received_record_for_six_function_timeouts(template):
    checks.check_visibility_timeout_is_six_function_timeouts(template)


def test_sqs_redrives_a_record_only_after_the_function_has_given_up_on_it(template):
    checks.check_redrive_comes_after_the_function_gives_up(template)


def test_every_failure_class_has_its_own_dead_letter_queue(template):
    checks.check_every_failure_class_has_its_own_queue(template)


def test_every_dead_letter_queue_raises_an_alarm_on_its_first_message(template):
    checks.check_every_dead_letter_queue_has_an_alarm(template)


# Function and event source ---------------------------------------------------------------


def test_function_is_built_by_cargo_lambda_for_arm64_on_provided_al2023(template):
    checks.check_function_build(template)


def test_event_source_reports_batch_item_failures_and_bounds_concurrency(template):
    checks.check_event_source_reports_failures_and_bounds_concurrency(template)


def test_containers_together_stay_within_connects_account_quota(template):
    checks.check_connect_quota_is_shared_not_exceeded(template)


def test_the_fleet_keeps_one_update_rate_within_the_stacks_quota(template):
    checks.check_the_fleet_keeps_one_update_rate_within_the_stacks_quota(template)


def test_a_full_batch_of_updates_fits_in_the_function_timeout(template):
    checks.check_a_batch_fits_in_the_timeout(template)


def test_defaults_refuse_other_instances_and_every_email_change(template):
    checks.check_defaults_refuse(template)


def test_function_logs_json_to_its_own_group_with_retention(template):
    checks.check_logs_are_json_in_an_explicit_group(template)


def test_function_trusts_its_compiled_in_roots_and_reads_no_ca_bundle(template):
    checks.check_no_ca_bundle_is_read(template)


# Staleness guard ---------------------------------------------------------------------------


def test_watermark_table_is_on_demand_encrypted_recoverable_and_expires_items(template):
    checks.check_watermark_table_is_on_demand_encrypted_recoverable_and_expiring(template)


def test_function_keeps_its_watermarks_in_the_table(template):
    checks.check_function_uses_the_watermark_table(template)


def test_watermarks_outlive_every_message_that_can_still_come_back(template):
    checks.check_watermarks_outlive_every_message_that_can_come_back(template)


def test_function_may_only_update_items_of_the_watermark_table(template):
    checks.check_dynamodb_item_updates_only_on_the_watermark_table(template)


def test_watermark_table_throttles_raise_an_alarm(template):
    checks.check_watermark_table_throttles_raise_an_alarm(template)


# EventBridge and outputs -----------------------------------------------------------------


def test_eventbridge_rule_filters_on_source_and_detail_type_into_the_source_queue(template):
    checks.check_rule_filters_and_targets_the_source_queue(template)


def test_source_queue_refuses_every_sender_but_the_rule_the_redrive_role_and_named_publishers(template):
    checks.check_source_queue_refuses_every_sender_it_does_not_name(template)


def test_every_dead_letter_queue_refuses_every_sender_but_the_one_that_dead_letters_into_it(template):
    checks.check_dead_letter_queues_refuse_every_sender_but_their_own(template)


def test_every_queue_refuses_requests_over_plain_http(template):
    checks.check_every_queue_refuses_plain_http(template)


def test_a_customer_managed_queue_key_is_a_parameter_away(template):
    checks.check_every_queue_is_encrypted(template)
    checks.check_a_queue_key_is_usable_by_every_role_that_reads_or_writes_the_queues(template)


def test_outputs_give_every_queue_url_and_the_function_arn(template):
    checks.check_outputs(template)


# Metrics and dry run ---------------------------------------------------------------------


def test_metrics_go_to_the_configured_namespace(template):
    checks.check_metrics_go_to_the_configured_namespace(template)


def test_every_failure_class_raises_an_alarm_on_its_first_dead_letter_metric(template):
    checks.check_every_failure_class_has_a_dead_letter_metric_alarm(template)


def test_throttled_connect_calls_raise_an_alarm_per_operation(template):
    checks.check_throttles_raise_an_alarm_per_operation(template)


def test_the_dashboard_shows_outcomes_dead_letters_by_class_throttles_and_limiter_wait(template):
    checks.check_dashboard_shows_outcomes_dead_letters_throttles_and_limiter_wait(template)


def test_the_template_deploys_no_dry_run_by_default(template):
    checks.check_dry_run_is_off_unless_chosen(template)


# Time ----------------------------------------------------------------------------------


def test_changes_refused_for_a_future_occurred_at_are_counted_graphed_and_raise_an_alarm(template):
    checks.check_refused_future_times_are_counted_and_raise_an_alarm(template)


def test_an_unusual_share_of_superseded_changes_raises_an_alarm(template):
    checks.check_an_unusual_share_of_superseded_changes_raises_an_alarm(template)


# SCIM endpoint -------------------------------------------------------------------------


def test_scim_endpoint_is_an_http_api_at_scim_v2_with_throttling_and_a_tenant_url(template):
    checks.check_scim_endpoint_is_an_http_api_at_scim_v2(template)


def test_scim_role_reads_the_instance_queues_to_the_source_and_reads_one_secret(template):
    checks.check_scim_role_reads_the_instance_queues_to_the_source_and_reads_one_secret(template)


def test_source_queue_names_the_scim_role_as_a_publisher(template):
    checks.check_source_queue_names_the_scim_role_as_a_publisher(template)


def test_scim_auth_failures_and_server_errors_raise_alarms(template):
    checks.check_scim_auth_failures_and_server_errors_raise_alarms(template)
