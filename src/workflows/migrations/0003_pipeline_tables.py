"""Pipeline data: clients, Cole exports, raw and cleaned leads, counts, gaps, windows, uploads.

Every step's writes are keyed so a retry can repeat them safely: files by content hash,
people by dedupe key, windows by (client, month, index), uploads by (client, workspace, email),
evergreen updates by (client, upload date, campaign). API keys are never stored: a client
row holds only the *name* of the environment variable or secret file with its key.

Revision ID: 0003_pipeline_tables
Revises: 0002_status_views
"""

from alembic import op

revision = "0003_pipeline_tables"
down_revision = "0002_status_views"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE clients (
            id                        serial PRIMARY KEY,
            name                      text NOT NULL UNIQUE CHECK (length(btrim(name)) > 0),
            tier                      integer NOT NULL CHECK (tier IN (100, 200)),
            licensed_states           text[] NOT NULL DEFAULT '{}',
            approved_zips             text[] NOT NULL DEFAULT '{}',
            emailbison_url            text,
            emailbison_key_env        text,
            evergreen_campaign_id     bigint,
            evergreen_hnw_campaign_id bigint,
            active                    boolean NOT NULL DEFAULT true,
            created_at                timestamptz NOT NULL DEFAULT now(),
            updated_at                timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON COLUMN clients.emailbison_key_env IS
            'name of the env var (or secret file) holding the EmailBison key; never the key';

        CREATE TABLE cole_files (
            id            bigserial PRIMARY KEY,
            client_id     integer NOT NULL REFERENCES clients (id),
            month         date NOT NULL,
            file_name     text NOT NULL,
            sha256        text NOT NULL,
            encoding      text NOT NULL,
            row_count     integer NOT NULL,
            bad_row_count integer NOT NULL,
            new_people    integer NOT NULL,
            loaded_at     timestamptz NOT NULL DEFAULT now(),
            job_id        bigint,
            UNIQUE (client_id, month, sha256)
        );

        CREATE TABLE raw_leads (
            id                bigserial PRIMARY KEY,
            client_id         integer NOT NULL REFERENCES clients (id),
            month             date NOT NULL,
            file_id           bigint NOT NULL REFERENCES cole_files (id),
            row_number        integer NOT NULL,
            first_name        text,
            last_name         text,
            address_1         text,
            city              text,
            state             text,
            zip               text,
            cell_phone_number text,
            email_address     text,
            purchase_date     text,
            home_value        text,
            head_household    text,
            income            text,
            date_of_birth     text,
            zip5              text,
            dedupe_key        text NOT NULL,
            UNIQUE (client_id, month, dedupe_key)
        );
        CREATE INDEX raw_leads_file ON raw_leads (file_id);

        CREATE TABLE cole_bad_rows (
            id         bigserial PRIMARY KEY,
            file_id    bigint NOT NULL REFERENCES cole_files (id),
            row_number integer NOT NULL,
            reason     text NOT NULL,
            raw        text NOT NULL,
            UNIQUE (file_id, row_number)
        );

        CREATE TABLE pulled_zips (
            client_id integer NOT NULL REFERENCES clients (id),
            month     date NOT NULL,
            zip       text NOT NULL,
            rows      integer NOT NULL,
            PRIMARY KEY (client_id, month, zip)
        );

        CREATE TABLE cleaned_leads (
            id                     bigserial PRIMARY KEY,
            client_id              integer NOT NULL REFERENCES clients (id),
            month                  date NOT NULL,
            raw_lead_id            bigint NOT NULL REFERENCES raw_leads (id),
            dedupe_key             text NOT NULL,
            first_name             text NOT NULL,
            greeting_name          text NOT NULL,
            last_name              text NOT NULL,
            email                  text NOT NULL,
            address_1              text,
            city                   text,
            state                  text NOT NULL,
            zip                    text NOT NULL,
            cell_phone             text,
            date_of_birth          text,
            home_value             numeric(14, 2) NOT NULL,
            purchase_date          date NOT NULL,
            readable_purchase_date text NOT NULL,
            purchase_day           integer NOT NULL CHECK (purchase_day BETWEEN 1 AND 31),
            renewal_date           date NOT NULL,
            window_index           integer NOT NULL CHECK (window_index BETWEEN 1 AND 4),
            segment                text NOT NULL CHECK (segment IN ('standard', 'texas_hnw')),
            email_check            text NOT NULL,
            selected               boolean NOT NULL DEFAULT true,
            UNIQUE (client_id, month, dedupe_key)
        );
        COMMENT ON COLUMN cleaned_leads.selected IS
            'false when PT3 left the lead out of an over-target month''s even sample by ZIP';
        CREATE INDEX cleaned_leads_window ON cleaned_leads (client_id, month, window_index);

        CREATE TABLE email_checks (
            email      text PRIMARY KEY,
            safe       boolean NOT NULL,
            checked_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE email_checks IS 'Debounce answers, cached per email (PT2)';

        CREATE TABLE monthly_counts (
            client_id          integer NOT NULL REFERENCES clients (id),
            month              date NOT NULL,
            raw_rows           integer NOT NULL,
            head_of_household  integer NOT NULL,
            no_head_household  integer NOT NULL,
            bad_fields         integer NOT NULL,
            over_value_cap     integer NOT NULL,
            relaxed_band       integer NOT NULL,
            texas_hnw          integer NOT NULL,
            email_invalid      integer NOT NULL,
            email_undeliverable integer NOT NULL,
            cleaned            integer NOT NULL,
            cleaned_standard   integer NOT NULL,
            computed_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (client_id, month)
        );

        CREATE TABLE gap_reports (
            client_id     integer NOT NULL REFERENCES clients (id),
            month         date NOT NULL,
            target        integer NOT NULL,
            cleaned_count integer NOT NULL,
            gap           integer NOT NULL,
            status        text NOT NULL,
            upsell        boolean NOT NULL,
            report        jsonb NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (client_id, month)
        );

        CREATE TABLE renewal_windows (
            id           bigserial PRIMARY KEY,
            client_id    integer NOT NULL REFERENCES clients (id),
            month        date NOT NULL,
            window_index integer NOT NULL CHECK (window_index BETWEEN 1 AND 4),
            start_date   date NOT NULL,
            end_date     date NOT NULL,
            upload_date  date NOT NULL,
            list_name    text NOT NULL,
            lead_count   integer NOT NULL DEFAULT 0,
            uploaded     integer NOT NULL DEFAULT 0,
            rejected     integer NOT NULL DEFAULT 0,
            completed_at timestamptz,
            UNIQUE (client_id, month, window_index)
        );

        CREATE TABLE window_leads (
            window_id       bigint NOT NULL REFERENCES renewal_windows (id),
            cleaned_lead_id bigint NOT NULL REFERENCES cleaned_leads (id) ON DELETE CASCADE,
            email           text NOT NULL,
            segment         text NOT NULL,
            PRIMARY KEY (window_id, email)
        );

        CREATE TABLE uploaded_leads (
            client_id          integer NOT NULL REFERENCES clients (id),
            workspace          text NOT NULL,
            email              text NOT NULL,
            window_id          bigint REFERENCES renewal_windows (id),
            emailbison_lead_id bigint,
            status             text NOT NULL CHECK (status IN ('uploaded', 'rejected')),
            reason             text,
            uploaded_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (client_id, workspace, email)
        );
        CREATE INDEX uploaded_leads_window ON uploaded_leads (window_id, status);

        CREATE TABLE evergreen_updates (
            id            bigserial PRIMARY KEY,
            client_id     integer NOT NULL REFERENCES clients (id),
            upload_date   date NOT NULL,
            window_id     bigint REFERENCES renewal_windows (id),
            campaign_id   bigint NOT NULL,
            segment       text NOT NULL,
            attached      integer NOT NULL,
            old_name      text,
            new_name      text NOT NULL,
            status        text NOT NULL CHECK (status IN ('updated', 'already_current')),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (client_id, upload_date, campaign_id)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE evergreen_updates, uploaded_leads, window_leads, renewal_windows,
                   gap_reports, monthly_counts, email_checks, cleaned_leads, pulled_zips,
                   cole_bad_rows, raw_leads, cole_files, clients;
        """
    )
