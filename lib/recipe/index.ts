export { DENSE_METHOD, formatRecipe, loadRecipe, parseRecipe, recipeSchema } from './schema';
export type { Recipe, RecipeInput } from './schema';
export { DSNOT_DEFAULTS, resolveRecipe } from './resolve';
export type { FieldNamer, ResolvedRecipe } from './resolve';
export { planOnly, planRecipe, recordJson, recordPathFor, runRecipe } from './run';
export type { RecipeHooks, RecipeOutcome, RunRecord } from './run';
