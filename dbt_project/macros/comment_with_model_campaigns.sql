{#- Comment the view int_matured_predictions with the model_campaigns var it was built with (JSON): mlscale.production.outcomes
    reads it to know which models the view covers, and rebuilds the view when that is not what it needs. -#}
{% macro comment_with_model_campaigns() -%}
    comment on view {{ this }} is '{{ tojson(var("model_campaigns")) | replace("'", "''") }}'
{%- endmacro %}
