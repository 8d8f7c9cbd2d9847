//! What an analyzer says about a conversation: an overall score, aspects
//! with the evidence for every point lost, and findings — as Coach keeps
//! and shows it, after the host has checked and clipped what the plugin
//! returned.

use serde::{Deserialize, Serialize};

/// Points an aspect lost: the turns (0-based) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub turns: Vec<u32>,
    pub reason: String,
    pub points: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aspect {
    pub name: String,
    /// 0–100.
    pub score: f64,
    /// 0–1.
    pub confidence: f64,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    pub message: String,
}

/// One conversation's analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The conversation's id.
    pub conversation: String,
    /// 0–100.
    pub score: f64,
    pub aspects: Vec<Aspect>,
    pub findings: Vec<Finding>,
}

impl Analysis {
    pub fn aspect(&self, name: &str) -> Option<&Aspect> {
        self.aspects.iter().find(|a| a.name == name)
    }
}
