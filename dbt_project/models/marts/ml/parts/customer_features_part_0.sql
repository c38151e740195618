{#- customer_features' rows of the customers in part 0 of 2 (config: dbt_project.yml, models/marts/ml/parts). The
    statistics hooks of int_customer_days and int_customer_versions (customer_part_statistics(2)) count the same parts:
    change both together, or PostgreSQL plans a part on its 0.5% guess again (macros/customer_part.sql). -#}
{{ customer_features_rows(customer_part(0, 2), is_incremental()) }}
