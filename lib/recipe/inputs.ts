import { assetPath } from '../assets';
import { BUILTIN_MODELS, OpenedModel } from '../model/resolve';

/** The files a run reads: the model's weights and tokenizer and the datasets on disk (outputs must spare them). */
export function inputPaths(model: OpenedModel, datasets: readonly string[] = []): string[] {
  const builtin = BUILTIN_MODELS[model.name];
  const paths = [builtin ? assetPath(...builtin.weights) : model.name, model.tokenizerPath];
  for (const d of datasets) {
    const file = datasetFile(d);
    if (file) paths.push(file);
  }
  return paths;
}

/** The file a dataset spec reads (text:PATH, c4:PATH); undefined for built-in datasets. */
export function datasetFile(spec: string): string | undefined {
  return /^(?:text|c4):(.+)$/.exec(spec)?.[1];
}
