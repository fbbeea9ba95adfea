// Mirrors `migrations/` (what `diesel print-schema` would write).

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Bytea,
        user_id -> Int8,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    work_items (id) {
        id -> Uuid,
        owner_id -> Int8,
        title -> Text,
        description -> Text,
        work_type -> Text,
        status -> Text,
        start_at -> Timestamptz,
        end_at -> Timestamptz,
        all_day -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    work_item_assignees (work_item_id, user_id) {
        work_item_id -> Uuid,
        user_id -> Int8,
    }
}

diesel::table! {
    cache_invalidations (id) {
        id -> Int8,
        user_id -> Int8,
        session_hash -> Nullable<Bytea>,
        attempt_after -> Timestamptz,
        attempts -> Int4,
        created_at -> Timestamptz,
        fence -> Nullable<Uuid>,
        extents -> Nullable<Array<Int8>>,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(work_items -> users (owner_id));
diesel::joinable!(work_item_assignees -> work_items (work_item_id));
diesel::joinable!(work_item_assignees -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(users, sessions, work_items, work_item_assignees, cache_invalidations);
