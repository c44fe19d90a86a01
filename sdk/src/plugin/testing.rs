use super::runtime::{self, HookTable};
use super::*;

/// A plugin instance built from settings JSON.
pub struct Harness<T: 'static> {
    plugin: T,
}

impl<T: DeserializeOwned + 'static> Harness<T> {
    /// Parses settings as `init` does (without [`Validate`]).
    pub fn with_settings(settings_json: &str) -> Result<Self> {
        Ok(Harness { plugin: runtime::init(&HookTable::<T>::EMPTY, settings_json)? })
    }

    /// Parses settings as `init` does, then runs [`Validate`].
    pub fn with_validated_settings(settings_json: &str) -> Result<Self>
    where
        T: Validate,
    {
        let table = HookTable::<T> { Validate: Some(runtime::entry::Validate::<T>), ..HookTable::EMPTY };
        Ok(Harness { plugin: runtime::init(&table, settings_json)? })
    }

    /// The plugin value.
    pub fn plugin(&self) -> &T {
        &self.plugin
    }

    /// Runs `configure` through the JSON boundary and parses the output strictly.
    pub fn configure(&self, host: &HostFacts) -> Result<ConfigDecision>
    where
        T: Configure,
    {
        let out = runtime::entry::Configure(&self.plugin, &serde_json::to_string(host)?)?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Runs `select-rules` through the JSON boundary.
    pub fn select_rules(&self, host: &HostFacts) -> Result<SelectionDecision>
    where
        T: SelectRules,
    {
        let out = runtime::entry::SelectRules(&self.plugin, &serde_json::to_string(host)?)?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Runs `triage` through the JSON boundary.
    pub fn triage(&self, batch: &EventBatch) -> Result<Verdicts>
    where
        T: Triage,
    {
        let out = runtime::entry::Triage(&self.plugin, &serde_json::to_string(batch)?)?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Runs `review` through the JSON boundary.
    pub fn review(&self, input: &ReviewInput) -> Result<ReviewDecision>
    where
        T: Review,
    {
        let out = runtime::entry::Review(&self.plugin, &serde_json::to_string(input)?)?;
        Ok(serde_json::from_str(&out)?)
    }
}
