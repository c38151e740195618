{#- customer_features' rows of the customers in part 1 of 2 (config: dbt_project.yml, models/marts/ml/parts). -#}
{{ customer_features_rows(customer_part(1, 2), is_incremental()) }}
