//! Conversation analyses: stored one row per conversation per analyzer
//! version (analysing again replaces it), read back per conversation, and
//! summed up per day for trends.

use super::Store;
use super::entities::quality_analyses;
use crate::core::analysis::{Analysis, Aspect, Finding};
use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use std::collections::BTreeMap;

/// One analysis to keep: the stored conversation it is about.
#[derive(Debug, Clone)]
pub struct NewAnalysis {
    pub conversation_id: i64,
    pub model: String,
    pub started_at: DateTime<Utc>,
    pub analysis: Analysis,
}

/// An analysis as the API shows it beside its conversation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StoredAnalysis {
    pub analyzer: String,
    pub analyzer_version: String,
    pub score: f64,
    pub aspects: Vec<Aspect>,
    pub findings: Vec<Finding>,
    pub analyzed_at: DateTime<Utc>,
}

/// Quality on one day (by when conversations started).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayQuality {
    pub day: NaiveDate,
    pub conversations: u64,
    pub mean_score: f64,
}

impl Store {
    /// Keep `rows`, analysed by `analyzer` at `version` (in one
    /// transaction; a conversation analysed before by the same version
    /// gets the new analysis).
    pub async fn save_analyses(
        &self,
        analyzer: &str,
        version: &str,
        run: Option<i64>,
        rows: &[NewAnalysis],
    ) -> Result<u64> {
        let now = Utc::now();
        let tx = self.begin_write().await?;
        for chunk in rows.chunks(500) {
            quality_analyses::Entity::delete_many()
                .filter(quality_analyses::Column::Analyzer.eq(analyzer))
                .filter(quality_analyses::Column::AnalyzerVersion.eq(version))
                .filter(
                    quality_analyses::Column::ConversationId
                        .is_in(chunk.iter().map(|r| r.conversation_id)),
                )
                .exec(&tx)
                .await?;
            let models = chunk.iter().map(|r| quality_analyses::ActiveModel {
                conversation_id: sea_orm::Set(r.conversation_id),
                model_name: sea_orm::Set(r.model.clone()),
                analyzer: sea_orm::Set(analyzer.to_owned()),
                analyzer_version: sea_orm::Set(version.to_owned()),
                score: sea_orm::Set(r.analysis.score),
                aspects: sea_orm::Set(
                    serde_json::to_string(&r.analysis.aspects).unwrap_or_else(|_| "[]".into()),
                ),
                findings: sea_orm::Set(
                    serde_json::to_string(&r.analysis.findings).unwrap_or_else(|_| "[]".into()),
                ),
                started_at: sea_orm::Set(r.started_at),
                analyzed_at: sea_orm::Set(now),
                run_id: sea_orm::Set(run),
                ..Default::default()
            });
            if !chunk.is_empty() {
                quality_analyses::Entity::insert_many(models)
                    .exec(&tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Every analysis of conversation `id`, newest first.
    pub async fn analyses_of(&self, id: i64) -> Result<Vec<StoredAnalysis>> {
        let rows = quality_analyses::Entity::find()
            .filter(quality_analyses::Column::ConversationId.eq(id))
            .order_by_desc(quality_analyses::Column::AnalyzedAt)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredAnalysis {
                aspects: serde_json::from_str(&r.aspects).unwrap_or_default(),
                findings: serde_json::from_str(&r.findings).unwrap_or_default(),
                analyzer: r.analyzer,
                analyzer_version: r.analyzer_version,
                score: r.score,
                analyzed_at: r.analyzed_at,
            })
            .collect())
    }

    /// Of `ids`, those `analyzer` at `version` has analysed.
    pub async fn analysed(
        &self,
        analyzer: &str,
        version: &str,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>> {
        let mut done = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let found: Vec<i64> = quality_analyses::Entity::find()
                .select_only()
                .column(quality_analyses::Column::ConversationId)
                .filter(quality_analyses::Column::Analyzer.eq(analyzer))
                .filter(quality_analyses::Column::AnalyzerVersion.eq(version))
                .filter(quality_analyses::Column::ConversationId.is_in(chunk.to_vec()))
                .into_tuple()
                .all(&self.db)
                .await?;
            done.extend(found);
        }
        Ok(done)
    }

    /// The mean score per day of `model`'s conversations started since
    /// `since`, by `analyzer` (any version: a conversation analysed by two
    /// versions counts with its latest analysis).
    pub async fn quality_by_day(
        &self,
        model: &str,
        analyzer: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DayQuality>> {
        let rows: Vec<(i64, f64, DateTime<Utc>, DateTime<Utc>)> = quality_analyses::Entity::find()
            .select_only()
            .column(quality_analyses::Column::ConversationId)
            .column(quality_analyses::Column::Score)
            .column(quality_analyses::Column::StartedAt)
            .column(quality_analyses::Column::AnalyzedAt)
            .filter(quality_analyses::Column::ModelName.eq(model))
            .filter(quality_analyses::Column::Analyzer.eq(analyzer))
            .filter(quality_analyses::Column::StartedAt.gte(since))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut latest: BTreeMap<i64, (f64, DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
        for (id, score, started, analysed) in rows {
            match latest.get(&id) {
                Some((_, _, was)) if *was >= analysed => {}
                _ => {
                    latest.insert(id, (score, started, analysed));
                }
            }
        }
        let mut days: BTreeMap<NaiveDate, (u64, f64)> = BTreeMap::new();
        for (score, started, _) in latest.into_values() {
            let d = days.entry(started.date_naive()).or_default();
            d.0 += 1;
            d.1 += score;
        }
        Ok(days
            .into_iter()
            .map(|(day, (n, sum))| DayQuality {
                day,
                conversations: n,
                mean_score: sum / n as f64,
            })
            .collect())
    }
}

/// How a model's conversation quality moves: the last 7 days against the
/// 7 before, per day too. What condition triggers and gates read as
/// `quality`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QualityTrend {
    pub analyzer: String,
    /// Mean score of conversations started in the last 7 days, and how
    /// many were analysed.
    pub last_7_days: Option<f64>,
    pub last_7_days_conversations: u64,
    /// The same for the 7 days before.
    pub previous_7_days: Option<f64>,
    pub previous_7_days_conversations: u64,
    /// `last_7_days - previous_7_days`, when both exist.
    pub change: Option<f64>,
    pub days: Vec<DayQuality>,
}

impl Store {
    /// Per model (at most 100, the most analysed): the mean score by
    /// `analyzer` of conversations started in the last `days`, and how
    /// many. Every version's analysis counts.
    pub async fn quality_by_model(
        &self,
        analyzer: &str,
        days: i64,
    ) -> Result<Vec<(String, f64, u64)>> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        let rows: Vec<(String, Option<f64>, i64)> = quality_analyses::Entity::find()
            .select_only()
            .column(quality_analyses::Column::ModelName)
            .expr(Expr::col(quality_analyses::Column::Score).avg())
            .expr(Expr::col(quality_analyses::Column::Id).count())
            .filter(quality_analyses::Column::Analyzer.eq(analyzer))
            .filter(
                quality_analyses::Column::StartedAt.gte(Utc::now() - chrono::Duration::days(days)),
            )
            .group_by(quality_analyses::Column::ModelName)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut out: Vec<(String, f64, u64)> = rows
            .into_iter()
            .filter_map(|(m, mean, n)| Some((m, mean?, n as u64)))
            .collect();
        out.sort_by_key(|x| std::cmp::Reverse(x.2));
        out.truncate(100);
        Ok(out)
    }

    /// [`QualityTrend`] of `model` by `analyzer`, as of now.
    pub async fn quality_trend(&self, model: &str, analyzer: &str) -> Result<QualityTrend> {
        let now = Utc::now();
        let days = self
            .quality_by_day(model, analyzer, now - chrono::Duration::days(14))
            .await?;
        let cut = (now - chrono::Duration::days(7)).date_naive();
        let mean = |recent: bool| {
            let (n, sum) =
                days.iter()
                    .filter(|d| (d.day > cut) == recent)
                    .fold((0u64, 0.0), |(n, s), d| {
                        (
                            n + d.conversations,
                            s + d.mean_score * d.conversations as f64,
                        )
                    });
            ((n > 0).then(|| sum / n as f64), n)
        };
        let (last, last_n) = mean(true);
        let (previous, previous_n) = mean(false);
        Ok(QualityTrend {
            analyzer: analyzer.to_owned(),
            last_7_days: last,
            last_7_days_conversations: last_n,
            previous_7_days: previous,
            previous_7_days_conversations: previous_n,
            change: last.zip(previous).map(|(a, b)| a - b),
            days,
        })
    }
}
