"""Pure sqlglot rewrite rules, in the style of sqlglot's optimizer.

Each rule is `rule(expression, *, policies, principal, schema) -> expression`: it either returns the (possibly
rewritten) expression or raises `PolicyViolation`. `enforce()` runs them in the fixed order of `RULES`; the checks
come first so that the final rule, `replace_tables`, only ever sees a query made of allowed parts.
"""
from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.scope import Scope, traverse_scope

from governance.errors import PolicyViolation
from governance.functions import function_name, is_allowed
from governance.policies import Policies, parse_snippet
from governance.principal import Principal
from governance.rights import Access, TableRights
from governance.schema import GovernedSchema, TableInfo

# Statements and clauses that read or change state outside a plain query; rejected wherever they appear.
_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, name) for name in (
        "DDL DML Command Into Pragma Set Use Copy Describe Show Summarize Transaction Commit Rollback Attach "
        "Detach Install Merge Insert Update Delete Create Drop Alter Lambda Pivot Export Refresh Kill Grant "
        "Revoke Analyze Cache Uncache LoadData"
    ).split() if hasattr(exp, name)
)
_PARAMETERS = (exp.Placeholder, exp.Parameter, exp.SessionParameter)
_TABLE_ARGS = {"this", "db", "catalog", "alias"}


def _deny(message: str, kind: str, hint: str, **fields: object) -> PolicyViolation:
    return PolicyViolation(message, kind=kind, hint=hint, **fields)


# --------------------------------------------------------------------------------------------- statement shape
def reject_non_queries(expression: exp.Expr, *, policies: Policies, principal: Principal,
                       schema: GovernedSchema) -> exp.Expr:
    """Only SELECT and set operations, with no INTO, DDL/DML, commands or unbound parameters anywhere."""
    if not isinstance(expression, (exp.Select, exp.SetOperation)):
        raise _deny(f"only SELECT queries are allowed, not {expression.key.upper()}", "statement",
                    "Send one SELECT (or UNION/INTERSECT/EXCEPT) statement.")
    for node in expression.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise _deny(f"{node.key.upper()} is not allowed in a query", "statement",
                        "Send one plain SELECT statement; governance only runs reads.")
        if isinstance(node, _PARAMETERS):
            raise _deny("query parameters and variables are not allowed", "statement",
                        "Write values as literals.")
    return expression


def normalize_names(expression: exp.Expr, *, policies: Policies, principal: Principal,
                    schema: GovernedSchema) -> exp.Expr:
    """Normalize table names, table aliases and column qualifiers with the dialect's case rules.

    Scope resolution compares names exactly, so `FROM X` must find `WITH x AS (...)` the way the database would.
    Column names and output aliases keep their spelling: they become the result's column names.
    """
    for node in expression.find_all(exp.Table, exp.TableAlias, exp.Column):
        keys = ("this", "db", "catalog") if isinstance(node, exp.Table) else (
            ("this",) if isinstance(node, exp.TableAlias) else ("table", "db", "catalog"))
        # Table names (and CTE names, which table references resolve to) follow the dialect's table rules.
        names_table = isinstance(node, exp.Table) or isinstance(node.parent, exp.CTE)
        for key in keys:
            ident = node.args.get(key)
            if isinstance(ident, exp.Identifier):
                ident.set("this", schema.norm(ident, table=names_table))
    return expression


# --------------------------------------------------------------------------------------------- sources
def reject_unsafe_sources(expression: exp.Expr, *, policies: Policies, principal: Principal,
                          schema: GovernedSchema) -> exp.Expr:
    """FROM items are plain table names, subqueries or VALUES: no table functions, files or table modifiers."""
    for table in expression.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise _deny("table functions are not allowed in FROM", "table_function",
                        "Read tables by name; files and table functions are not available.")
        extra = sorted(k for k, v in table.args.items() if v and k not in _TABLE_ARGS)
        if extra:
            raise _deny(f"table modifier {extra[0]!r} is not allowed", "table_modifier",
                        "Use a plain table reference with an optional alias.")
        alias = table.args.get("alias")
        if alias is not None and alias.columns:
            raise _deny("column aliases on a table are not allowed", "table_modifier",
                        "Alias the columns in the SELECT list instead.")
    for lateral in expression.find_all(exp.Lateral):
        if not isinstance(lateral.this, exp.Subquery):
            raise _deny("LATERAL is only allowed with a subquery", "table_function",
                        "Write LATERAL (SELECT ...).")
    return expression


def reject_unlisted_functions(expression: exp.Expr, *, policies: Policies, principal: Principal,
                              schema: GovernedSchema) -> exp.Expr:
    """Every function must be on the allowlist of scalar, aggregate and window functions."""
    for func in expression.find_all(exp.Func):
        if not is_allowed(func):
            raise _deny(f"function {function_name(func)!r} is not allowed", "function",
                        "Use standard scalar, aggregate and window functions; see governance/functions.py.",
                        function=function_name(func))
    return expression


# --------------------------------------------------------------------------------------------- scopes
def _scopes(expression: exp.Expr) -> list[Scope]:
    try:
        return traverse_scope(expression)
    except OptimizeError as err:
        raise _deny(f"cannot resolve the query's scopes: {err}", "syntax", "Check table aliases and CTEs.") from None


def _source_nodes(select: exp.Select) -> Iterator[exp.Expr]:
    """The sources one SELECT reads: its FROM item and every JOIN's (of every kind), laterals, and the joins
    nested in a parenthesized join."""
    pending: list[exp.Expr] = []
    from_ = select.args.get("from_")
    if from_ is not None:
        pending.append(from_.this)
    pending += [join.this for join in select.args.get("joins") or []]
    pending += list(select.args.get("laterals") or [])
    while pending:
        source = pending.pop(0)
        yield source
        pending += [join.this for join in source.args.get("joins") or []]


def duplicate_names(expression: exp.Expr) -> list[tuple[str, str]]:
    """`(what, name)` for each name that two sources of one scope share (`what` = "source"), or two CTEs of one
    WITH (`what` = "CTE"), in query order, each once. Names are compared without case (fail closed in every
    dialect); an unnamed derived table counts as the name ''."""
    found: list[tuple[str, str]] = []
    groups = [("source", [source.alias_or_name for source in _source_nodes(select)])
              for select in expression.find_all(exp.Select)]
    groups += [("CTE", [cte.alias for cte in with_.expressions]) for with_ in expression.find_all(exp.With)]
    reported: set[tuple[str, str]] = set()
    for what, names in groups:
        seen: set[str] = set()
        for name in names:
            key = name.lower()
            if key in seen and (what, key) not in reported:
                found.append((what, name))
                reported.add((what, key))
            seen.add(key)
    return found


def reject_duplicate_sources(expression: exp.Expr, *, policies: Policies, principal: Principal,
                             schema: GovernedSchema) -> exp.Expr:
    """Every source of a scope has its own name, and every CTE of a WITH too.

    Resolution by name is only sound when names are unique: `FROM customers AS x, (SELECT 1) AS x` would otherwise
    let one source stand in for the other.
    """
    found = duplicate_names(expression)
    if found:
        what, name = found[0]
        shown = f"the name {name!r}" if name else "no alias"
        hint = ("Give each CTE of a WITH its own name." if what == "CTE"
                else "Give each table, subquery and CTE in one FROM its own alias.")
        raise _deny(f"two {what}s in one scope have {shown}; names must be unique", "duplicate_name", hint,
                    name=name)
    return expression


def _visible_ctes(table: exp.Table, schema: GovernedSchema) -> set[str]:
    """The CTE names an unqualified table reference can resolve to, read from the enclosing WITH clauses the way
    the database does: a query body sees all of its WITH's CTEs, a CTE body the earlier ones (all if RECURSIVE)."""
    names: set[str] = set()
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            ctes = node.expressions
            visible = ctes if node.args.get("recursive") else ctes[:ctes.index(child)]
            names |= {schema.norm(cte.args["alias"].this, table=True) for cte in visible}
        else:
            with_ = node.args.get("with_")
            if isinstance(with_, exp.With) and child is not with_:
                names |= {schema.norm(cte.args["alias"].this, table=True) for cte in with_.expressions}
        child, node = node, node.parent
    return names


def _is_cte_reference(table: exp.Table, schema: GovernedSchema) -> bool:
    qualified = table.args.get("db") is not None or table.args.get("catalog") is not None
    return not qualified and schema.norm(table.this, table=True) in _visible_ctes(table, schema)


def _base_tables(expression: exp.Expr, schema: GovernedSchema) -> Iterator[exp.Table]:
    """Every reference to a catalog table (anything that is not a visible CTE), found structurally: each table node
    of the tree, placed by the WITH clauses around it, never looked up in a name map. Fails closed on a table
    reference outside FROM/JOIN."""
    for table in list(expression.find_all(exp.Table)):
        if not isinstance(table.parent, (exp.From, exp.Join)):
            raise _deny("a table reference is in an unsupported position", "statement",
                        "Reference tables in FROM and JOIN clauses only.")
        if not _is_cte_reference(table, schema):
            yield table


def _resolve(table: exp.Table, schema: GovernedSchema, principal: Principal) -> tuple[TableInfo, TableRights]:
    """The catalog table a reference names, if the principal may read it; unknown and invisible look the same."""
    info = schema.tables.get(schema.norm(table.this, table=True)) if schema.qualifiers_match(table) else None
    rights = schema.rights(info, principal)
    if info is None or not rights.visible:
        shown = ".".join(part.name for part in table.parts)
        raise _deny(f"table {shown!r} does not exist or is not visible to you", "table",
                    "Use eng.catalog(principal) to list the tables you may query.", table=table.name)
    return info, rights


def reject_shadowing(expression: exp.Expr, *, policies: Policies, principal: Principal,
                     schema: GovernedSchema) -> exp.Expr:
    """A CTE, subquery or alias may not take the name of a catalog table (it would capture its references)."""
    for alias in expression.find_all(exp.TableAlias):
        name = alias.name.lower()
        owner = alias.parent
        renames_itself = isinstance(owner, exp.Table) and owner.name.lower() == name
        if name in schema.reserved and not renames_itself:
            raise _deny(f"the name {alias.name!r} shadows a table of the catalog", "shadowing",
                        "Give the CTE, subquery or alias another name.", name=alias.name)
    return expression


def resolve_tables(expression: exp.Expr, *, policies: Policies, principal: Principal,
                   schema: GovernedSchema) -> exp.Expr:
    """Deny by default: every base table must exist and be readable by one of the principal's roles."""
    _scopes(expression)  # a query whose scopes cannot be resolved is refused here, before its columns are checked
    for table in _base_tables(expression, schema):
        _resolve(table, schema, principal)
    return expression


# --------------------------------------------------------------------------------------------- columns
class _ColumnChecker:
    """Checks the column references of one scope against the base tables visible from it."""

    def __init__(self, scope: Scope, schema: GovernedSchema, principal: Principal) -> None:
        self.scope, self.schema, self.principal = scope, schema, principal
        select = scope.expression
        self.aliases = {schema.norm(e.args.get("alias")) for e in select.expressions if isinstance(e, exp.Alias)} \
            if isinstance(select, exp.Select) else set()

    def chain(self) -> Iterator[Scope]:
        scope: Scope | None = self.scope
        while scope is not None:
            yield scope
            scope = scope.parent

    def base(self, scope: Scope, alias: str) -> tuple[TableInfo, TableRights] | None:
        source = scope.sources.get(alias)
        return _resolve(source, self.schema, self.principal) if isinstance(source, exp.Table) else None

    def deny_column(self, name: str, info: TableInfo) -> PolicyViolation:
        """One refusal for a denied and a missing column, so that no principal can probe for hidden columns."""
        return _deny(f"column {name!r} of table {info.name!r} does not exist or is not visible to you", "column",
                     "Remove the column from the query; eng.catalog(principal) lists the columns you may read.",
                     table=info.name, column=name)

    @staticmethod
    def denying(resolved: tuple[TableInfo, TableRights] | None, name: str) -> TableInfo | None:
        """The table, if `resolved` is a base table that denies column `name` to the principal."""
        if resolved is None or name not in resolved[0].columns:
            return None
        info, rights = resolved
        return info if rights.access(info.columns[name][0]) is Access.DENIED else None

    def through_stars(self, source: Scope, name: str) -> TableInfo | None:
        """The base table whose denied column `name` a derived table or CTE would pass on through `*`."""
        select = source.expression
        if not isinstance(select, exp.Select) or not select.is_star or \
                name in {self.schema.norm(n) for n in select.named_selects}:
            return None
        for alias, inner in source.sources.items():
            found = self.denying(self.base(source, alias), name)
            if found is None and isinstance(inner, Scope):
                found = self.through_stars(inner, name)
            if found is not None:
                return found
        return None

    def check_source(self, scope: Scope, alias: str, name: str, display: str, *, qualified: bool = False) -> None:
        source = scope.sources[alias]
        resolved = self.base(scope, alias)
        if qualified and resolved is not None and name not in resolved[0].columns:
            raise self.deny_column(display, resolved[0])  # `t.missing` reads like `t.denied`
        hidden = self.denying(self.base(scope, alias), name) or \
            (self.through_stars(source, name) if isinstance(source, Scope) else None)
        if hidden is not None:
            raise self.deny_column(display, hidden)

    def check_name(self, name: str, display: str) -> None:
        """An unqualified name: denied if any source in scope (or an enclosing one) denies it (fail closed)."""
        for scope in self.chain():
            for alias in scope.sources:
                self.check_source(scope, alias, name, display)

    def check_qualified(self, qualifier: str, name: str, display: str) -> None:
        for scope in self.chain():
            if qualifier in scope.sources:
                self.check_source(scope, qualifier, name, display, qualified=True)
                return
        self.check_name(qualifier, qualifier)  # `x.field` where x is a (struct) column

    def known_columns(self) -> set[str]:
        """Column names this scope's sources provide (catalog columns, derived tables' output names)."""
        known: set[str] = set()
        for source in self.scope.sources.values():
            if isinstance(source, exp.Table):
                info = self.schema.tables.get(self.schema.norm(source.this))
                known |= set(info.columns) if info else set()
            elif isinstance(source, Scope) and isinstance(source.expression, exp.Query):
                known |= {self.schema.norm(n) for n in source.expression.named_selects}
        return known

    def check_missing(self, name: str, display: str) -> None:
        """An unqualified name that no source in scope provides, where every source is a catalog table: refused
        like a denied column (derived tables and CTEs are left to the database, which sees only governed columns)."""
        tables = [self.base(scope, alias) for scope in self.chain() for alias in scope.sources]
        if tables and all(t is not None for t in tables) and \
                not any(name in t[0].columns for t in tables if t is not None):
            first = next(t for t in tables if t is not None)
            raise self.deny_column(display, first[0])

    def whole_row(self, name: str) -> bool:
        return any(name in s.sources for s in self.chain())

    def check_whole_row(self, name: str, column: exp.Column) -> None:
        if self.whole_row(name) and name not in self.known_columns():
            raise _deny(f"whole-row reference {column.name!r} is not allowed", "whole_row",
                        "Name the columns you need instead of the table alias.")

    def output_alias(self, column: exp.Column, name: str) -> bool:
        """True for `ORDER BY x` / `HAVING x > 1` where x is an alias of the SELECT list, not a column.

        Safe to let through: denied columns do not exist in the governed subqueries, so x can only be the alias.
        Inside the SELECT list itself a name is always checked as a column.
        """
        select = self.scope.expression
        if name not in self.aliases:
            return False
        node: exp.Expr = column
        while node.parent is not None and node.parent is not select:
            node = node.parent
        return node.arg_key != "expressions"

    def check_column(self, column: exp.Column) -> None:
        if isinstance(column.this, exp.Star):
            return
        name = self.schema.norm(column.this)
        if column.args.get("table") is None and self.output_alias(column, name):
            return
        if column.args.get("table") is not None:
            self.check_qualified(self.schema.norm(column.args["table"]), name, column.name)
        else:
            self.check_name(name, column.name)
            self.check_whole_row(name, column)
            if not self.whole_row(name):
                self.check_missing(name, column.name)

    def check_identifiers(self, idents: list[exp.Expr]) -> None:
        for ident in idents:
            node = ident.this if isinstance(ident, exp.Column) else ident
            if isinstance(node, exp.Identifier):
                self.check_name(self.schema.norm(node), node.name)


def _star_extras(star: exp.Star) -> list[exp.Expr]:
    """Names that a `* EXCLUDE (...) / REPLACE (... AS x) / RENAME (x AS y)` spells out."""
    names: list[exp.Expr] = list(star.args.get("except") or star.args.get("except_") or [])
    for item in (star.args.get("replace") or []) + (star.args.get("rename") or []):
        names.append(item.args.get("alias") or item)
        if isinstance(item.this, exp.Column):
            names.append(item.this)
    return names


def _check_stars(expression: exp.Expr) -> None:
    """`*` and `t.*` only as SELECT items (or COUNT(*)); COLUMNS(...) never: they pick columns implicitly."""
    if expression.find(exp.Columns):
        raise _deny("COLUMNS(...) is not allowed", "star", "List the columns you need by name.")
    if expression.find(exp.PositionalColumn):
        raise _deny("positional column references (#n) are not allowed", "star", "Name the column instead.")
    for star in expression.find_all(exp.Star):
        item = star.parent if isinstance(star.parent, exp.Column) else star
        parent = item.parent
        in_select = isinstance(parent, exp.Select) and item.arg_key == "expressions"
        in_count = isinstance(parent, exp.Count) and item is star and item.arg_key == "this"
        if not (in_select or in_count):
            raise _deny("'*' is only allowed as a SELECT item or in COUNT(*)", "star",
                        "List the columns you need by name.")


def reject_denied_columns(expression: exp.Expr, *, policies: Policies, principal: Principal,
                          schema: GovernedSchema) -> exp.Expr:
    """A denied column named anywhere (also via EXCLUDE/REPLACE, USING, struct access) is an error; so are
    whole-row references, `*` inside functions and COLUMNS(...), which would pick up columns implicitly."""
    _check_stars(expression)
    for scope in _scopes(expression):
        checker = _ColumnChecker(scope, schema, principal)
        # Every node of the scope itself; sqlglot's `scope.columns` leaves out HAVING and QUALIFY columns.
        for node in scope.walk():
            if isinstance(node, exp.Column):
                checker.check_column(node)
            elif isinstance(node, exp.Star):
                checker.check_identifiers(_star_extras(node))
            elif isinstance(node, exp.Join) and node.args.get("using"):
                checker.check_identifiers(node.args["using"])
    return expression


# --------------------------------------------------------------------------------------------- rewrite
def _literal(value: object) -> exp.Expr:
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def _bind(sql: str, info: TableInfo, alias: exp.Identifier, principal: Principal,
          schema: GovernedSchema) -> exp.Expr:
    """Parse a policy snippet, bind `:attributes` as literal nodes and qualify its columns with the table."""
    snippet = parse_snippet(sql)
    attributes = {"user": principal.user, **principal.attributes}
    for placeholder in list(snippet.find_all(exp.Placeholder)):
        if placeholder.name not in attributes:
            raise _deny(f"a row filter of table {info.name!r} needs the principal attribute {placeholder.name!r}",
                        "attribute", f"Give the principal attributes={{'{placeholder.name}': ...}}.",
                        attribute=placeholder.name)
        placeholder.replace(_literal(attributes[placeholder.name]))
    for column in list(snippet.find_all(exp.Column)):
        if column.args.get("table") is None and column.find_ancestor(exp.Select) is None:
            exact = info.columns.get(schema.norm(column.name))
            if exact is None:
                raise PolicyViolation(f"a policy of table {info.name!r} uses unknown column {column.name!r}",
                                      kind="policy", hint="Fix the policy file: its snippets must use the "
                                      "table's own columns.", table=info.name)
            qualified = _qualified_column(exact[0], alias, schema)
            snippet = qualified if column is snippet else snippet
            column.replace(qualified)
    return snippet


def _qualified_column(name: str, table: exp.Identifier, schema: GovernedSchema) -> exp.Column:
    return exp.Column(this=schema.ident(name), table=table.copy())


def _row_filter(info: TableInfo, rights: TableRights, inner: exp.Identifier, principal: Principal,
                schema: GovernedSchema) -> exp.Expr:
    """The OR of the row filters of the principal's reading roles (each bound and parenthesized)."""
    bound = [_bind(f, info, inner, principal, schema) for f in rights.row_filters]
    if len(bound) == 1:
        return bound[0]
    return exp.or_(*(exp.Paren(this=b) for b in bound), copy=False)


def governed_subquery(info: TableInfo, rights: TableRights, principal: Principal,
                      schema: GovernedSchema) -> exp.Select:
    """`SELECT <allowed columns, masks applied> FROM <qualified table> WHERE <row filter>` for one table."""
    inner = schema.ident(info.name)
    items: list[exp.Expr] = []
    for exact, _type in info.columns.values():
        access = rights.access(exact)
        if access is Access.PLAIN:
            items.append(_qualified_column(exact, inner, schema))
        elif access is Access.MASKED:
            masked = _bind(rights.masks[exact.lower()], info, inner, principal, schema)
            items.append(exp.Alias(this=masked, alias=schema.ident(exact)))
    if not items:
        raise _deny(f"no column of table {info.name!r} is visible to you", "column",
                    "Ask for access to at least one column.", table=info.name)
    source = schema.qualified(info.name)
    source.set("alias", exp.TableAlias(this=inner.copy()))
    select = exp.Select(expressions=items, from_=exp.From(this=source))
    if not rights.all_rows:
        select.set("where", exp.Where(this=_row_filter(info, rights, inner, principal, schema)))
    return select


def _drop_column_qualifiers(expression: exp.Expr, table: str) -> None:
    """`main.t.col` -> `t.col`: the governed subquery is aliased `t`, so the schema part would not resolve."""
    for column in expression.find_all(exp.Column):
        if column.args.get("db") is not None and column.table == table:
            column.set("db", None)
            column.set("catalog", None)


def replace_tables(expression: exp.Expr, *, policies: Policies, principal: Principal,
                   schema: GovernedSchema) -> exp.Expr:
    """Replace every base-table reference by its governed subquery, keeping the reference's alias."""
    built: dict[str, exp.Select] = {}
    wrapped: set[int] = set()
    for table in list(_base_tables(expression, schema)):
        info, rights = _resolve(table, schema, principal)
        # Build each table's subquery once; later references (self-joins) get copies.
        select = built[info.name].copy() if info.name in built else governed_subquery(info, rights, principal, schema)
        built.setdefault(info.name, select)
        alias = table.args.get("alias")
        alias_ident = alias.this.copy() if alias is not None else exp.to_identifier(table.name)
        if alias is None and table.args.get("db") is not None:
            _drop_column_qualifiers(expression, table.name)
        subquery = exp.Subquery(this=select, alias=exp.TableAlias(this=alias_ident))
        table.replace(subquery)
        wrapped.add(id(select.args["from_"].this))
    check_governed(expression, wrapped, schema)
    return expression


def check_governed(expression: exp.Expr, wrapped: set[int], schema: GovernedSchema) -> None:
    """Post-condition on the final tree: every table reference is either the source of a governance wrapper built by
    `replace_tables` (by identity, so no query text can imitate one) or an unqualified reference to a visible CTE that
    names no catalog table. Anything else means a rule missed a reference: the query is refused."""
    for table in expression.find_all(exp.Table):
        if id(table) in wrapped:
            continue
        if not _is_cte_reference(table, schema) or table.name.lower() in schema.reserved:
            raise _deny("a table reference escaped governance; the query is refused", "unwrapped_table",
                        "Simplify the query (unique aliases, tables in FROM/JOIN) and report this to your admin.",
                        table=table.name)


RULES = (
    reject_non_queries,
    normalize_names,
    reject_unsafe_sources,
    reject_unlisted_functions,
    reject_duplicate_sources,
    reject_shadowing,
    resolve_tables,
    reject_denied_columns,
    replace_tables,
)
