//! placeholder: encodes answers into AnswerEntry
