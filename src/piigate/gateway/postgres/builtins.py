"""Which functions the SQL analysis trusts: the common built-ins of PostgreSQL's ``pg_catalog``.

A function the analysis cannot see into could send its arguments anywhere (a table, a setting,
another server, an error message), so every call to a function that is not on ``ALLOWED`` is
taken as reading every catalogued column (fail closed). The list holds value functions only:
what they return depends on their arguments, and they write nothing. Built-ins that do more are
kept apart: ``FLOWS`` copy a value somewhere the catalog does not watch, ``BLIND`` run SQL text
or read a relation by name, so the analysis cannot know what they read.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ALLOWED", "BLIND", "ERROR_QUOTING", "FLOWS", "SESSION_SETTINGS", "TEXT_TYPES"]

_GROUPS: Final = (
    # Strings (9.4, 9.7).
    "ascii bit_length btrim char_length character_length chr concat concat_ws convert_from "
    "convert_to decode encode format initcap left length lower lpad ltrim md5 normalize "
    "octet_length overlay position quote_ident quote_literal quote_nullable regexp_count "
    "regexp_instr regexp_like regexp_match regexp_matches regexp_replace regexp_split_to_array "
    "regexp_split_to_table regexp_substr repeat replace reverse right rpad rtrim split_part "
    "starts_with string_to_array string_to_table strpos substr substring translate trim upper "
    "unistr sha224 sha256 sha384 sha512 get_byte get_bit set_byte set_bit to_hex to_ascii "
    "casefold",
    # Numbers (9.3).
    "abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 min_scale mod "
    "pi power radians random random_normal round scale sign sqrt trim_scale trunc width_bucket "
    "acos asin atan atan2 cos cot sin tan sinh cosh tanh asinh acosh atanh setseed",
    # Formatting, dates and times (9.8, 9.9).
    "to_char age clock_timestamp date_add date_bin date_part date_subtract date_trunc extract "
    "isfinite justify_days justify_hours justify_interval localtime localtimestamp make_date "
    "make_interval make_time make_timestamp make_timestamptz now statement_timestamp timeofday "
    "transaction_timestamp current_date current_time current_timestamp timezone",
    # Conditionals, comparison (9.18, 9.2).
    "coalesce nullif greatest least num_nonnulls num_nulls",
    # Aggregates (9.21) and windows (9.22).
    "array_agg avg bit_and bit_or bit_xor bool_and bool_or count every json_agg jsonb_agg "
    "json_object_agg jsonb_object_agg max min range_agg range_intersect_agg string_agg sum "
    "xmlagg any_value corr covar_pop covar_samp regr_avgx regr_avgy regr_count regr_intercept "
    "regr_r2 regr_slope regr_sxx regr_sxy regr_syy stddev stddev_pop stddev_samp variance "
    "var_pop var_samp mode percentile_cont percentile_disc rank dense_rank percent_rank "
    "cume_dist row_number ntile lag lead first_value last_value nth_value grouping "
    "json_agg_strict jsonb_agg_strict json_object_agg_strict jsonb_object_agg_strict "
    "json_object_agg_unique jsonb_object_agg_unique json_arrayagg json_objectagg",
    # JSON (9.16).
    "to_json to_jsonb array_to_json row_to_json json_build_array jsonb_build_array "
    "json_build_object jsonb_build_object json_object jsonb_object json_array_length "
    "jsonb_array_length json_each jsonb_each json_each_text jsonb_each_text json_extract_path "
    "jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_object_keys "
    "jsonb_object_keys json_array_elements jsonb_array_elements json_array_elements_text "
    "jsonb_array_elements_text json_typeof jsonb_typeof json_strip_nulls jsonb_strip_nulls "
    "jsonb_set jsonb_set_lax jsonb_insert jsonb_pretty jsonb_path_exists jsonb_path_match "
    "jsonb_path_query jsonb_path_query_array jsonb_path_query_first json_array json_scalar "
    "json_serialize json_exists json_query json_value json_populate_record jsonb_populate_record "
    "json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset",
    # XML constructors (9.15.1), arrays (9.19), ranges, sets (9.25), hashing.
    "xmlcomment xmlconcat xmlelement xmlforest xmlpi xmlroot xmlparse xmlserialize xmltext "
    "xpath xpath_exists array_append array_cat array_dims array_fill array_length array_lower "
    "array_ndims array_position array_positions array_prepend array_remove array_replace "
    "array_reverse array_sample array_shuffle array_sort array_to_string array_upper "
    "cardinality trim_array unnest generate_series generate_subscripts lower_inc upper_inc "
    "isempty lower_inf upper_inf range_merge int4range int8range numrange tsrange tstzrange "
    "daterange hashtext crc32 crc32c",
    # Session information that reads no table (9.26).
    "current_catalog current_database current_query current_role current_schema "
    "current_schemas current_user session_user user version pg_backend_pid inet_client_addr "
    "inet_client_port inet_server_addr inet_server_port pg_postmaster_start_time "
    "pg_is_in_recovery txid_current pg_current_xact_id current_setting pg_typeof "
    "gen_random_uuid uuidv4 uuidv7 nextval currval setval lastval pg_sleep",
    # Syntax that sqlglot reads as a call: ROW(…), ARRAY(…), EXISTS (…), = ANY (…).
    "row array exists any all some",
)
ALLOWED: Final[frozenset[str]] = frozenset(name for group in _GROUPS for name in group.split())

# Built-ins that copy their arguments out of the catalog's sight: a setting, a notification.
FLOWS: Final[frozenset[str]] = frozenset({"set_config", "pg_notify"})

# Built-ins that run SQL given as text or read a relation named by a value: what they read is
# not in the statement.
BLIND: Final[frozenset[str]] = frozenset(
    {
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
    }
)

# Built-ins whose errors quote their argument ("relation "…" does not exist"): a value passed to
# them can come back in an error message.
ERROR_QUOTING: Final[frozenset[str]] = frozenset(
    {"nextval", "currval", "setval", "to_number", "to_date", "to_timestamp", "xmlparse"}
)

# Casts to these types never fail on a value, so the value cannot reach an error message.
TEXT_TYPES: Final[frozenset[str]] = frozenset(
    {"TEXT", "VARCHAR", "CHAR", "BPCHAR", "NAME", "NCHAR", "NVARCHAR"}
)

# Settings whose change alters how later statements are read (names resolved, roles, strings).
SESSION_SETTINGS: Final[frozenset[str]] = frozenset(
    {
        "search_path",
        "role",
        "session",
        "session_authorization",
        "all",
        "standard_conforming_strings",
    }
)
