"""The function allowlist. Anything not listed here is rejected: table functions, file readers, catalog and
dynamic-SQL functions, settings and environment readers never appear on these lists (allowlist, not denylist).

sqlglot parses a known function into a typed expression class and an unknown one into `exp.Anonymous`, so the
allowlist has two halves: typed classes by name, and anonymous (DuckDB-specific) functions by lower-case name.
"""
from __future__ import annotations

from sqlglot import exp

_LOGIC = "And Or Xor Case If Cast TryCast Coalesce Nullif Nvl2 Greatest Least EqualNull Exists Collate"
_MATH = ("Abs Acos Acosh Asin Asinh Atan Atan2 Atanh Cbrt Ceil Cos Cosh Cot Degrees Exp Floor Ln Log Pi Pow "
         "Radians Round Sign Sin Sinh Sqrt Tan Tanh Trunc IsNan IsInf Factorial WidthBucket Rand SafeDivide")
_TEXT = ("Ascii Chr Concat ConcatWs Contains EndsWith StartsWith Initcap Left Right Length Lower Upper Pad Repeat "
         "Replace Reverse SplitPart Substring StrPosition Trim Translate Levenshtein JarowinklerSimilarity "
         "RegexpLike RegexpILike RegexpExtract RegexpReplace RegexpFullMatch MD5 SHA SHA2 Hex Unhex "
         "ByteLength BitLength Split ArrayToString Soundex")
_TIME = ("CurrentDate CurrentTimestamp CurrentTime Date DateAdd DateSub DateDiff DateTrunc TimestampTrunc "
         "TimestampAdd TimestampSub TimestampDiff DatetimeAdd DatetimeSub DatetimeDiff DatetimeTrunc TimeTrunc "
         "Extract Year Quarter Month Week WeekOfYear Day DayOfMonth DayOfWeek DayOfWeekIso DayOfYear Hour Minute "
         "Second Dayname Monthname LastDay StrToTime StrToDate TimeToStr UnixToTime TimeToUnix TimeStrToTime "
         "TsOrDsToDate TsOrDsAdd TsOrDsDiff DateStrToDate MakeInterval DateFromParts TimestampFromParts "
         "Timestamp Time Datetime AddMonths MonthsBetween UnixSeconds UnixMillis UnixMicros ToDays")
_AGG = ("Count CountIf Sum Avg Min Max Median Mode Quantile ApproxQuantile PercentileCont PercentileDisc Stddev "
        "StddevPop StddevSamp Variance VariancePop Corr CovarPop CovarSamp ApproxDistinct AnyValue ArgMax ArgMin "
        "First Last FirstValue LastValue NthValue ArrayAgg GroupConcat LogicalAnd LogicalOr Kurtosis Skewness "
        "RegrSlope RegrIntercept RegrR2 RegrCount RegrAvgx RegrAvgy RegrSxx RegrSxy RegrSyy BitwiseAndAgg "
        "BitwiseOrAgg BitwiseXorAgg Grouping")
_WINDOW = "RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead"
_NESTED = "Array ArraySize ArrayContains Struct StructExtract Typeof"

ALLOWED_CLASSES: frozenset[type[exp.Func]] = frozenset(
    getattr(exp, name) for group in (_LOGIC, _MATH, _TEXT, _TIME, _AGG, _WINDOW, _NESTED)
    for name in group.split() if hasattr(exp, name)
)

ALLOWED_NAMES: frozenset[str] = frozenset("""
abs ceil ceiling floor round round_even roundbankers sign sqrt cbrt pow power exp ln log log2 log10 pi degrees
radians sin cos tan asin acos atan atan2 cot trunc gamma lgamma even factorial gcd lcm isfinite isnan isinf random
bit_count signbit nextafter
len strlen length char_length character_length octet_length lower lcase upper ucase ltrim rtrim trim lpad rpad
prefix suffix starts_with ends_with instr position strpos ord chr left right concat concat_ws replace reverse repeat
split_part substr substring string_split str_split regexp_matches regexp_split_to_array regexp_extract_all
levenshtein editdist3 damerau_levenshtein hamming jaccard jaro_similarity jaro_winkler_similarity mismatches
format printf md5 md5_number sha1 sha256 hash bin hex unhex
epoch epoch_ms epoch_us epoch_ns date_part datepart strftime strptime try_strptime make_date make_time
make_timestamp age isodow isoyear dayofmonth dayofweek dayofyear weekday weekofyear yearweek year month day hour
minute second microsecond millisecond quarter week century decade millennium era julian date_diff datediff
date_sub datesub date_add date_trunc datetrunc time_bucket last_day dayname monthname to_timestamp to_days
to_hours to_minutes to_seconds to_months to_years to_weeks to_milliseconds to_microseconds today now
current_date get_current_timestamp transaction_timestamp
bool_and bool_or product fsum sumkahan favg entropy approx_count_distinct quantile quantile_cont quantile_disc
mad arg_max arg_min argmax argmin max_by min_by histogram string_agg listagg list array_agg stddev stddev_samp
stddev_pop var_samp var_pop variance corr covar_pop covar_samp kurtosis kurtosis_pop skewness mode median first
last any_value arbitrary min max sum avg mean count count_if countif bit_and bit_or bit_xor regr_slope
regr_intercept regr_r2 regr_count regr_avgx regr_avgy regr_sxx regr_sxy regr_syy
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
ifnull nullif coalesce greatest least typeof struct_extract list_extract array_extract list_element array_length
list_contains list_has uuid gen_random_uuid
""".split())


def function_name(node: exp.Func) -> str:
    """The name to show in errors: the SQL name as written for anonymous functions, else sqlglot's name."""
    return node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()


def is_allowed(node: exp.Func) -> bool:
    """True when `node` is a scalar, aggregate or window function on the allowlist."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in ALLOWED_NAMES
    return type(node) in ALLOWED_CLASSES
