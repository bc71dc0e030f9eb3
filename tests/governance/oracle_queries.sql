-- Corpus for test_pg_oracle.py: every query runs for every oracle principal on agentml (DuckDB) and on
-- PostgreSQL (RLS + column GRANTs + security_barrier views); both must return the same multiset of rows or both
-- deny. Portable subset only: no integer division, no LIMIT without a total order, every derived table aliased,
-- no quoted mixed-case names, no whole-row references, no denied column whose name another table also has.
-- Format: a header line `-- name: what it probes`, then one statement.

-- star-customers: star expands to the visible columns, masks applied
SELECT * FROM customers;
-- star-orders: star on a table with a denied column for some roles
SELECT * FROM orders;
-- star-payments: table visible only to finance/admin
SELECT * FROM payments;
-- star-qualified: alias.* expands like *
SELECT c.* FROM customers c;
-- star-derived: star over a derived table over a governed table
SELECT * FROM (SELECT * FROM customers) s WHERE s.tier = 'platinum';
-- star-join: star over a join keeps both sides' visible columns in order
SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.amount > 450;
-- star-alias-orders: o.* with a filter
SELECT o.* FROM orders o WHERE o.status = 'returned';
-- cols-plain: unmasked columns
SELECT id, name, region FROM customers;
-- cols-email: masked for analyst/support
SELECT id, email FROM customers;
-- cols-phone: denied for analyst, masked for support
SELECT id, phone FROM customers;
-- cols-ssn: denied except admin
SELECT id, ssn FROM customers;
-- cols-spend: masked numeric for support
SELECT id, spend FROM customers WHERE spend > 1000;
-- cols-discount: denied for support/intern
SELECT id, discount_code FROM orders;
-- cols-customer-id: denied for intern
SELECT id, customer_id, amount FROM orders;
-- cols-card: masked for finance
SELECT id, card_number, amount FROM payments;
-- cols-cvv: denied for finance
SELECT id, cvv FROM payments;
-- case-fold: unquoted identifiers fold
SELECT ID, Name FROM CUSTOMERS WHERE Region = 'EU';
-- quoted-lower: quoted lower-case names
SELECT "id", "email" FROM "customers";
-- table-qualified: columns qualified by the table name
SELECT customers.id, customers.tier FROM customers;
-- count-customers: row filters in a count
SELECT count(*) FROM customers;
-- count-orders: row filters in a count
SELECT count(*) FROM orders;
-- count-payments: numeric attribute filter
SELECT count(*) FROM payments;
-- distinct-region: filtered distinct
SELECT DISTINCT region FROM customers;
-- distinct-tier: filtered distinct
SELECT DISTINCT tier FROM customers;
-- no-table: a query reading no table is allowed for everyone
SELECT 1 AS one;
-- mask-like-domain: predicate on a masked column sees the mask
SELECT id FROM customers WHERE email LIKE '%@example.com';
-- mask-like-prefix: the local part is gone after masking
SELECT id FROM customers WHERE email LIKE 'a%';
-- mask-equals: equality against the masked value
SELECT count(*) FROM customers WHERE email = '***@example.com';
-- mask-split: functions over a masked column
SELECT id FROM customers WHERE split_part(email, '@', 1) = '***';
-- mask-numeric-eq: masked spend is a multiple of 100
SELECT id, spend FROM customers WHERE spend = 1300;
-- mask-numeric-range: range predicate on a masked numeric
SELECT count(*) FROM customers WHERE spend BETWEEN 1000 AND 1099.99;
-- mask-numeric-gt: threshold between mask buckets
SELECT id FROM customers WHERE spend > 1234.5;
-- mask-case-eq: masked amount is 0 or 100
SELECT id FROM orders WHERE amount = 100;
-- mask-agg-where: aggregate and predicate on a masked column
SELECT count(*), sum(amount) FROM orders WHERE amount > 50;
-- mask-card-like: predicate on masked card numbers
SELECT id FROM payments WHERE card_number LIKE '4%';
-- mask-phone-like: masked phone prefix
SELECT id FROM customers WHERE phone LIKE 'XXX-%';
-- mask-order-by: ordering by a masked column
SELECT id, email FROM customers ORDER BY email, id;
-- mask-group-by: grouping by a masked column collapses groups
SELECT email, count(*) FROM customers GROUP BY email;
-- mask-group-expr: grouping by an expression on a masked column
SELECT right(phone, 4) AS last4, count(*) FROM customers GROUP BY 1;
-- mask-minmax: aggregates over a masked numeric
SELECT max(spend), min(spend), avg(spend) FROM customers;
-- mask-null: NULL stays NULL through a mask
SELECT id FROM customers WHERE email IS NULL;
-- mask-having: HAVING over a masked numeric
SELECT tier, sum(spend) FROM customers GROUP BY tier HAVING sum(spend) > 2000;
-- mask-length: scalar functions over masked text
SELECT id, length(email), upper(name) FROM customers;
-- mask-distinct-from: null-safe comparison on a masked column
SELECT id FROM customers WHERE email IS DISTINCT FROM name;
-- mask-self-join: joining on a masked column joins masked values
SELECT a.id, b.id FROM customers a JOIN customers b ON a.email = b.email AND a.id < b.id;
-- mask-in-subquery: correlated IN over masked values
SELECT c.id FROM customers c WHERE c.email IN (SELECT c2.email FROM customers c2 WHERE c2.id <> c.id);
-- mask-case: CASE over a masked numeric
SELECT id, CASE WHEN spend > 1000 THEN 'big' ELSE 'small' END AS size FROM customers;
-- deny-where: denied column in WHERE
SELECT id FROM customers WHERE ssn LIKE '1%';
-- deny-order: denied column in ORDER BY
SELECT id FROM customers ORDER BY ssn;
-- deny-group: denied column in GROUP BY
SELECT ssn, count(*) FROM customers GROUP BY ssn;
-- deny-count-distinct: denied column inside an aggregate
SELECT count(DISTINCT ssn) FROM customers;
-- deny-having: denied column in HAVING only
SELECT tier FROM customers GROUP BY tier HAVING count(ssn) > 1;
-- deny-join-on: denied columns in a join condition only
SELECT o.id FROM orders o JOIN customers c ON c.ssn = o.discount_code;
-- deny-is-null: denied column in IS NOT NULL
SELECT id FROM orders WHERE discount_code IS NOT NULL;
-- deny-in-subquery: denied column inside an IN subquery
SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE discount_code = 'SAVE10');
-- deny-cte: denied column inside an unused CTE column
WITH x AS (SELECT id, ssn FROM customers) SELECT count(*) FROM x;
-- deny-scalar-subquery: denied column in a scalar subquery
SELECT (SELECT max(cvv) FROM payments) AS m;
-- deny-exists: denied column in EXISTS
SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM payments WHERE payments.cvv = '123');
-- deny-coalesce: denied column inside a function
SELECT coalesce(phone, 'none') FROM customers;
-- deny-empty: denied even when no row could match
SELECT upper(ssn) FROM customers WHERE 1 = 0;
-- deny-union-branch: denied column in one branch of a set operation
SELECT id FROM customers UNION SELECT customer_id FROM orders;
-- deny-where-only: denied column used only to filter
SELECT * FROM orders WHERE customer_id = 3;
-- deny-union-both: denied columns on both sides
SELECT ssn FROM customers UNION SELECT discount_code FROM orders;
-- deny-delete: statements other than SELECT
DELETE FROM orders WHERE id = 1;
-- deny-update: statements other than SELECT
UPDATE customers SET tier = 'gold';
-- deny-create-as: statements other than SELECT
CREATE TABLE leak AS SELECT * FROM customers;
-- join-inner: inner join under both tables' filters
SELECT c.id, c.name, o.id AS order_id, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id;
-- join-left-agg: left join and aggregates
SELECT c.region, count(o.id), sum(o.amount) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.region;
-- join-left-orphans: left join from orders keeps orders whose customer is filtered away
SELECT o.id, c.id FROM orders o LEFT JOIN customers c ON c.id = o.customer_id;
-- join-group-two: grouping by columns of both sides
SELECT c.tier, o.status, count(*) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.tier, o.status;
-- join-payments: orders to payments
SELECT o.id, p.id, p.amount FROM orders o JOIN payments p ON p.order_id = o.id;
-- join-three: three-table join
SELECT c.id, o.id, p.method FROM customers c JOIN orders o ON o.customer_id = c.id JOIN payments p ON p.order_id = o.id;
-- join-masked-select: masked column in a join's output
SELECT c.email, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.amount > 200;
-- join-full: full outer join with a compound condition
SELECT c.id, o.id FROM customers c FULL OUTER JOIN orders o ON o.customer_id = c.id AND o.region = c.region;
-- join-cross-derived: cross join with a derived aggregate
SELECT c.id FROM customers c CROSS JOIN (SELECT count(*) AS n FROM orders) t WHERE c.id <= t.n - 150;
-- join-comma: implicit join syntax
SELECT c.id, o.id FROM customers c, orders o WHERE c.id = o.customer_id AND c.region = o.region;
-- join-lateral: lateral subquery correlated to a governed table
SELECT c.id, l.n FROM customers c JOIN LATERAL (SELECT count(*) AS n FROM orders o WHERE o.customer_id = c.id) l ON true;
-- join-regions: both tables' row filters on the same attribute
SELECT c.region, o.region, count(*) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.region, o.region;
-- join-three-masked: masked card numbers through a three-table join
SELECT c.id, p.card_number FROM customers c JOIN orders o ON o.customer_id = c.id JOIN payments p ON p.order_id = o.id WHERE c.tier = 'gold';
-- join-anti: anti join through LEFT JOIN / IS NULL
SELECT c.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE o.id IS NULL;
-- join-using: USING join with an explicit column list
SELECT o.id, c.id FROM orders o JOIN customers c USING (region) WHERE o.amount > 400;
-- agg-region: grouped aggregates over a masked numeric
SELECT region, count(*), sum(spend), avg(spend) FROM customers GROUP BY region;
-- agg-status: min/max over a masked numeric
SELECT status, count(*), min(amount), max(amount) FROM orders GROUP BY status;
-- agg-method: payments aggregates under a numeric filter
SELECT method, count(*), sum(amount) FROM payments GROUP BY method;
-- agg-count-distinct: distinct count of a column denied to intern
SELECT count(DISTINCT customer_id) FROM orders;
-- agg-count-cols: counting a denied column
SELECT count(email), count(phone) FROM customers;
-- agg-filter: aggregate FILTER clause over a masked column
SELECT tier, count(*) FILTER (WHERE spend > 500) FROM customers GROUP BY tier;
-- agg-extract: grouping by an extracted date part
SELECT extract(year FROM ordered_on) AS y, count(*) FROM orders GROUP BY 1;
-- agg-string-agg: ordered string aggregation
SELECT string_agg(name, ',' ORDER BY name, id) FROM customers WHERE tier = 'gold';
-- agg-bool: boolean aggregates
SELECT bool_or(settled), bool_and(settled) FROM payments;
-- agg-having-count: HAVING on a count
SELECT region, tier, count(*) FROM customers GROUP BY region, tier HAVING count(*) >= 2;
-- agg-case-sum: conditional sum
SELECT sum(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) FROM orders;
-- agg-round-avg: rounded average over a masked numeric
SELECT round(avg(amount), 2) FROM orders WHERE status = 'shipped';
-- agg-per-customer: HAVING over a grouped denied-to-intern key
SELECT customer_id, count(*) FROM orders GROUP BY customer_id HAVING count(*) > 3;
-- agg-dates: min/max of dates
SELECT min(signup), max(signup) FROM customers;
-- agg-nullif: grouping by an expression
SELECT nullif(tier, 'free') AS t, count(*) FROM customers GROUP BY 1;
-- sub-in: IN subquery over another governed table
SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE amount > 300);
-- sub-exists: correlated EXISTS
SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.status = 'returned');
-- sub-not-exists: correlated NOT EXISTS sees only visible orders
SELECT id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id);
-- sub-scalar-correlated: correlated scalar subquery in the select list
SELECT id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n FROM customers c;
-- sub-scalar-avg: comparison with an aggregate over the same (filtered, masked) table
SELECT id FROM customers WHERE spend > (SELECT avg(spend) FROM customers);
-- sub-derived: filtering a derived aggregate
SELECT t.region, t.n FROM (SELECT region, count(*) AS n FROM customers GROUP BY region) t WHERE t.n > 5;
-- sub-all: quantified comparison against another table
SELECT id FROM orders WHERE amount > ALL (SELECT amount FROM payments WHERE method = 'bank');
-- sub-not-in: NOT IN against a filtered table
SELECT id FROM orders WHERE customer_id NOT IN (SELECT id FROM customers);
-- sub-max-of-counts: aggregate over a derived aggregate
SELECT max(n) FROM (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) s;
-- sub-payments-in: IN over orders from payments
SELECT id FROM payments WHERE order_id IN (SELECT id FROM orders WHERE status = 'shipped');
-- sub-eq-min: scalar subquery equality
SELECT c.name FROM customers c WHERE c.id = (SELECT min(customer_id) FROM orders);
-- cte-simple: CTE over a governed table
WITH eu AS (SELECT id, name FROM customers WHERE region = 'EU') SELECT count(*) FROM eu;
-- cte-join: CTE aggregate joined back to a governed table
WITH big AS (SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id) SELECT c.id, b.total FROM customers c JOIN big b ON b.customer_id = c.id;
-- cte-two-stars: two CTEs with stars
WITH o AS (SELECT * FROM orders WHERE status = 'shipped'), c AS (SELECT * FROM customers) SELECT c.tier, count(*) FROM c JOIN o ON o.customer_id = c.id GROUP BY c.tier;
-- cte-masked: predicate on a masked column through a CTE
WITH x AS (SELECT email FROM customers) SELECT email FROM x WHERE email LIKE '%.org';
-- cte-recursive: recursive CTE joined to a governed table
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT r.n, count(c.id) FROM r LEFT JOIN customers c ON c.id % 5 = r.n - 1 GROUP BY r.n;
-- cte-avg: CTE aggregate over a masked numeric
WITH t AS (SELECT region, avg(spend) AS a FROM customers GROUP BY region) SELECT region FROM t WHERE a > 1000;
-- cte-payments: CTE over payments joined to orders
WITH p AS (SELECT order_id, sum(amount) AS paid FROM payments GROUP BY order_id) SELECT o.id, o.amount, p.paid FROM orders o JOIN p ON p.order_id = o.id;
-- cte-nested: CTE referencing another CTE
WITH a AS (SELECT id, tier FROM customers), b AS (SELECT tier, count(*) AS n FROM a GROUP BY tier) SELECT tier, n FROM b WHERE n > 1;
-- set-union: UNION of two governed tables
SELECT region FROM customers UNION SELECT region FROM orders;
-- set-union-all: UNION ALL keeps duplicates
SELECT region FROM customers UNION ALL SELECT region FROM orders;
-- set-intersect: INTERSECT
SELECT id FROM customers INTERSECT SELECT customer_id FROM orders;
-- set-except: EXCEPT
SELECT id FROM customers EXCEPT SELECT customer_id FROM orders;
-- set-masked-union: masked columns from two tables in one UNION
SELECT email FROM customers UNION SELECT card_number FROM payments;
-- set-union-literals: UNION ALL with constant columns
SELECT id, 'c' AS kind FROM customers WHERE tier = 'gold' UNION ALL SELECT id, 'o' FROM orders WHERE status = 'pending';
-- set-except-parens: parenthesised set operation
(SELECT region FROM customers) EXCEPT (SELECT region FROM orders WHERE status = 'shipped');
-- set-in-derived: set operation inside a derived table
SELECT count(*) FROM (SELECT customer_id FROM orders UNION SELECT id FROM customers) u;
-- set-intersect-masked: INTERSECT over masked values
SELECT email FROM customers WHERE tier = 'gold' INTERSECT SELECT email FROM customers WHERE tier = 'silver';
-- win-row-number: window partitioned by a filtered column
SELECT id, row_number() OVER (PARTITION BY region ORDER BY id) AS rn FROM customers;
-- win-sum: window sum over a masked column
SELECT id, sum(amount) OVER (PARTITION BY customer_id) AS s FROM orders;
-- win-rank: rank ordered by a masked column
SELECT customer_id, id, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC, id) FROM orders;
-- win-masked-partition: partition by a masked column
SELECT id, count(*) OVER (PARTITION BY email) FROM customers;
-- expr-or-in: OR and IN predicates
SELECT id FROM customers WHERE name LIKE 'A%' OR tier IN ('gold', 'platinum');
-- expr-date-range: date range
SELECT id FROM orders WHERE ordered_on BETWEEN DATE '2024-03-01' AND DATE '2024-06-30';
-- expr-coalesce-denied: coalesce over a column denied to support/intern
SELECT id, coalesce(discount_code, 'none') FROM orders;
-- expr-date-and-null: date and null predicates
SELECT id FROM customers WHERE signup < DATE '2023-01-01' AND region IS NOT NULL;
-- expr-limit: ORDER BY a masked column with a total order, LIMIT
SELECT id FROM orders ORDER BY amount DESC, id LIMIT 5;
-- expr-offset: LIMIT/OFFSET over filtered rows
SELECT id, name FROM customers ORDER BY id LIMIT 3 OFFSET 2;
-- expr-filter-intersection: a user predicate on top of a row filter
SELECT count(*) FROM customers WHERE region = 'EU' AND tier <> 'free';
-- expr-phone-null: IS NULL on a column denied to analyst
SELECT id FROM customers WHERE phone IS NULL;
-- expr-settled: boolean column as a predicate
SELECT id FROM payments WHERE settled AND amount > 100;
-- expr-region-literal: a predicate that contradicts the row filter
SELECT id FROM customers WHERE region = 'US';
-- expr-or-filter: OR in a user predicate must not widen the row filter
SELECT id FROM orders WHERE status = 'cancelled' OR region = 'EU';
-- expr-true: a tautology must not widen the row filter
SELECT count(*) FROM customers WHERE 1 = 1 OR region IS NULL;
-- expr-arith: arithmetic on masked numerics
SELECT id, spend * 2 + 1 FROM customers WHERE spend < 500;
-- expr-concat: concatenation with a masked column
SELECT name || ' <' || email || '>' FROM customers;
-- expr-in-list: IN list on a masked column
SELECT id FROM orders WHERE amount IN (0, 100);
-- deny-having-max: denied column inside an aggregate in HAVING, compared with a literal
SELECT tier FROM customers GROUP BY tier HAVING max(ssn) > '5';
-- deny-window-order: denied column only in a window's ORDER BY
SELECT id, row_number() OVER (ORDER BY ssn) FROM customers;
-- deny-agg-order: denied column only in an ordered aggregate's ORDER BY
SELECT string_agg(name, ',' ORDER BY ssn) FROM customers;
-- deny-agg-filter: denied column only in an aggregate FILTER clause
SELECT count(*) FILTER (WHERE ssn > '5') FROM customers;
-- deny-using: denied column as a USING join key
SELECT a.id FROM customers a JOIN customers b USING (ssn);
-- deny-case-where: denied column inside CASE in WHERE
SELECT id FROM customers WHERE CASE WHEN ssn IS NULL THEN false ELSE true END;
-- deny-sub-unqualified: unqualified denied column inside an IN subquery
SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE ssn LIKE '1%');
-- deny-outer-unqualified: unqualified outer (correlated) reference to a denied column
SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders WHERE customer_id = c.id AND ssn IS NULL);
-- deny-outer-scalar: correlated scalar subquery comparing with an outer denied column
SELECT (SELECT count(*) FROM orders o WHERE o.discount_code = ssn) FROM customers;
-- deny-lateral-outer: lateral subquery selecting an outer denied column
SELECT c.id, l.s FROM customers c JOIN LATERAL (SELECT c.ssn AS s) l ON true;
-- deny-derived-rename: denied column renamed in a derived table
SELECT x FROM (SELECT ssn AS x FROM customers) t;
-- deny-length: denied column in a nested function
SELECT max(length(ssn)) FROM customers;
-- deny-upper-case: unquoted upper-case spelling of a denied column
SELECT Customers.SSN FROM Customers;
-- deny-quoted: quoted denied column
SELECT "ssn" FROM customers;
-- deny-cross-table: a visible table joined with an invisible one
SELECT count(*) FROM customers, payments;
-- alias-named-like-denied: an output alias spelled like a denied column is not that column
SELECT name AS ssn FROM customers ORDER BY ssn;
-- derived-named-like-denied: a derived column spelled like a denied column is not that column
SELECT ssn FROM (SELECT name AS ssn FROM customers) t;
-- cte-named-like-denied: a CTE column spelled like a denied column is not that column
WITH x AS (SELECT id AS ssn FROM customers) SELECT ssn FROM x WHERE ssn < 10;
-- alias-masked-swap: a masked column under another visible column's name
SELECT email AS phone, phone AS email FROM customers;
-- join-natural-self: NATURAL self-join joins on the visible columns only
SELECT count(*) FROM customers a NATURAL JOIN customers b;
-- join-natural-payments: NATURAL join of orders and payments (id, amount)
SELECT count(*) FROM orders NATURAL JOIN payments;
-- join-using-masked: USING join on a masked column
SELECT a.id, b.id FROM customers a JOIN customers b USING (email) WHERE a.id < b.id;
-- star-self-join: star over a self-join keeps duplicates of every visible column
SELECT * FROM customers a JOIN customers b ON a.id = b.id + 1;
-- group-rollup: ROLLUP over filtered rows
SELECT region, tier, count(*) FROM customers GROUP BY ROLLUP (region, tier);
-- group-sets: GROUPING SETS over a masked numeric
SELECT status, region, sum(amount) FROM orders GROUP BY GROUPING SETS ((status), (region), ());
-- mask-substr: substring of a masked column
SELECT substr(email, 1, 4) AS head, count(*) FROM customers GROUP BY 1;
-- mask-replace: replace over a masked column
SELECT id, replace(phone, 'XXX', 'YYY') FROM customers;
-- sub-exists-star: star inside EXISTS
SELECT count(*) FROM orders o WHERE EXISTS (SELECT * FROM customers c WHERE c.id = o.customer_id);
-- sub-tuple-in: row-value IN over two governed tables
SELECT id FROM customers WHERE (id, region) IN (SELECT customer_id, region FROM orders);
-- deny-having-qualified: qualified denied column in HAVING
SELECT c.tier FROM customers c GROUP BY c.tier HAVING count(c.ssn) > 1;
-- values-join: VALUES list left-joined to a governed table
SELECT v.x, count(c.id) FROM (VALUES ('EU'), ('US'), ('APAC')) AS v(x) LEFT JOIN customers c ON c.region = v.x GROUP BY v.x;
-- sub-any: = ANY over a governed subquery
SELECT id FROM customers WHERE id = ANY (SELECT customer_id FROM orders WHERE status = 'pending');
-- set-order-limit: ORDER BY and LIMIT over a set operation
SELECT region FROM customers UNION SELECT region FROM orders ORDER BY 1 NULLS LAST LIMIT 2;
-- sub-all-correlated: correlated ALL comparing a masked numeric with another table
SELECT c.id FROM customers c WHERE c.spend > ALL (SELECT o.amount FROM orders o WHERE o.customer_id = c.id);

-- alias-dup-derived: a table and a derived table share an alias (both refuse)
SELECT x.name, x.region FROM customers AS x, (SELECT 1 AS a) AS x WHERE x.region <> 'north';
-- alias-dup-cte: a CTE and a table aliased like it share a name in one FROM (both refuse)
WITH x AS (SELECT 1 AS a) SELECT x.name FROM customers AS x, x;
-- alias-dup-left-join: duplicate alias across a LEFT JOIN (both refuse)
SELECT x.name FROM customers AS x LEFT JOIN (SELECT 1 AS a) AS x ON TRUE;
-- alias-dup-lateral: duplicate alias with a LATERAL subquery (both refuse)
SELECT x.name FROM customers AS x, LATERAL (SELECT 1 AS a) AS x;
-- alias-dup-two-tables: the same alias on two governed tables (both refuse)
SELECT x.id FROM customers AS x JOIN orders AS x ON TRUE;
-- alias-dup-nested: the collision inside a derived table (both refuse)
SELECT s.name FROM (SELECT x.name FROM customers AS x, (SELECT 1 AS a) AS x) AS s;
-- alias-unique-shadow-inner: an inner scope may reuse an outer alias (allowed, correlated)
SELECT x.id FROM customers AS x WHERE EXISTS (SELECT 1 FROM orders AS x WHERE x.amount > 400);
