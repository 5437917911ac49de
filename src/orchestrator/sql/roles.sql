-- Roles and grants for least privilege (orchestrator roles), one named block per step.
-- Rendered with psycopg.sql: {owner}, {worker}, {reader}, {table} are identifiers;
-- {name}, {owner_name}, {worker_name}, {reader_name}, {table_name} the same names as string
-- literals (for DO blocks); {database} a literal or current_database(); {password_setting}
-- the transaction-local setting holding a role's password. Every block can run again.

-- create_role --
-- A group role (NOLOGIN) when missing; an existing role is left as it is, password included.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', {name});
    END IF;
END
$roles$;

-- create_login_role --
-- A role that logs in with the password given for it, created or updated.
DO $roles$
DECLARE
    password text := pg_catalog.current_setting({password_setting}, true);
BEGIN
    IF coalesce(password, '') = '' THEN
        RAISE EXCEPTION 'no password given for role %', {name}
            USING HINT = {password_hint};
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN
        EXECUTE pg_catalog.format('ALTER ROLE %I LOGIN PASSWORD %L', {name}, password);
    ELSE
        EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN PASSWORD %L', {name}, password);
    END IF;
END
$roles$;

-- check_limited_role --
-- A superuser, or a member of the owner, would bypass every grant below: refuse.
DO $roles$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN
        RAISE EXCEPTION 'role % is a superuser: its privileges cannot be limited', {name};
    END IF;
    IF pg_catalog.pg_has_role({name}, {owner_name}, 'MEMBER') THEN
        RAISE EXCEPTION 'role % is a member of the owner role %', {name}, {owner_name};
    END IF;
END
$roles$;

-- database --
-- The owner owns the database (so it may run this script again after each migration); only
-- the worker may create temporary tables (PT1 stages rows in one); both may connect.
DO $roles$
DECLARE
    db name := {database};
BEGIN
    IF db <> pg_catalog.current_database() THEN
        RAISE EXCEPTION 'these grants are for database %, not %', db,
            pg_catalog.current_database();
    END IF;
    IF (SELECT datdba FROM pg_catalog.pg_database WHERE datname = db)
       <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {owner_name}) THEN
        EXECUTE pg_catalog.format('ALTER DATABASE %I OWNER TO %I', db, {owner_name});
    END IF;
    IF pg_catalog.has_database_privilege('public', db, 'TEMPORARY') THEN
        EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', db);
    END IF;
    EXECUTE pg_catalog.format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', db, {worker_name});
    EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM %I', db, {reader_name});
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %I', db, {reader_name});
END
$roles$;

-- schema --
-- Only the owner creates objects (PostgreSQL < 15 lets everyone create in public).
DO $roles$
BEGIN
    IF pg_catalog.has_schema_privilege('public', 'public', 'CREATE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    END IF;
END
$roles$;
GRANT USAGE, CREATE ON SCHEMA public TO {owner};
REVOKE CREATE ON SCHEMA public FROM {worker}, {reader};
GRANT USAGE ON SCHEMA public TO {worker}, {reader};

-- tables --
-- Exactly these privileges, whatever was granted before: the reader reads every table and
-- view; the worker reads views (never writes through them: a view checks the underlying
-- table's rights as its owner) and reads and writes tables; sequences feed its inserts.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {worker}, {reader};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {worker}, {reader};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {worker};
DO $roles$
DECLARE
    relation record;
BEGIN
    FOR relation IN
        SELECT c.oid::regclass AS name, c.relkind IN ('r', 'p') AS is_table
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    LOOP
        EXECUTE pg_catalog.format(
            'GRANT %s ON TABLE %s TO %I',
            CASE WHEN relation.is_table THEN 'SELECT, INSERT, UPDATE, DELETE' ELSE 'SELECT' END,
            relation.name, {worker_name});
    END LOOP;
END
$roles$;

-- limit_table --
-- A table on which the worker gets less (declared by the engine or a plugin), once it exists.
DO $roles$
BEGIN
    IF pg_catalog.to_regclass({table_name}) IS NOT NULL THEN
        REVOKE ALL ON TABLE {table} FROM {worker};
        {grant}
    END IF;
END
$roles$;

-- default_privileges --
-- Tables and sequences the owner creates later (new migrations) get the same grants; run this
-- script again after a migration that adds a view or a limited table.
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {worker};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT USAGE ON SEQUENCES TO {worker};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT SELECT ON TABLES TO {reader};
