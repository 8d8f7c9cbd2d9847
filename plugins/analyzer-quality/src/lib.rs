//! `analyzer-quality`: how well a conversation went, from what was said in
//! it (and, where the bot's platform sent them, the model's predictions and
//! the users' feedback). See [`score`] for the aspects and how each is
//! computed.

pub mod score;
